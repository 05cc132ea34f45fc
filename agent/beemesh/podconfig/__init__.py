"""What a pod takes from ConfigMaps and Secrets: resolving references (`resolve`), sealing a
Secret's values to the machine that runs a pod using it (`sealing`), the sealed copies a
machine holds and passes on (`holding`), and the files of configMap and secret volumes on a
tmpfs (`writing`). The objects themselves are `beemesh.manifest.config`."""
