"""The machine agent (`beemesh agent`): the services of one machine composed into one process.

`agent` builds and runs them; `inbound` checks and routes what arrives on the topics;
`routes` serves the local API; `requests` carries out the operator's requests; `deleting`
carries out Deletes and relays them; `exchange` fetches manifests for late joiners; `logs`
serves and relays pod logs; `workplane_link` runs the work plane and answers it.
"""
