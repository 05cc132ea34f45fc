"""Rollout: getting the agent onto machines, with or without network.

- `bundle_format`: the offline bundle's layout and its signed manifest kind, and what the
  bundle commands share (file hashes, the podman CLI);
- `create`: `beemesh bundle create` (and its deterministic tar);
- `verify`: `beemesh bundle verify`, the trust source, unpacking a bundle tar;
- `install`: `beemesh bundle install` (and `--start`);
- `units`: the systemd unit and agent.toml, rendered for both `bundle install` and the Ansible
  role (`ansible/roles/beemesh_agent`, through `beemesh rollout render-unit|render-config`).

Formats: bundles/README.md, ansible/README.md.
"""
