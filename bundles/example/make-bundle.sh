#!/bin/sh
# Example: build a bundle for one site onto a mounted stick. No secrets live here: the fleet
# material comes from $BEEMESH_FLEET (the operator's own copy), never from this repository.
# Usage: BEEMESH_FLEET=~/fleet sh bundles/example/make-bundle.sh plant-a /media/stick
set -eu
site=${1:?site name}
stick=${2:?mounted stick directory}
make pyz
beemesh bundle create --site "$site" --out "$stick/$site" --tar "$stick/$site.tar" \
    --peers "$(dirname "$0")/peers.txt"
beemesh bundle verify "$stick/$site"
