#!/bin/sh
# Example exec provider: appends one line per grant or revoke to
# data/example-access.log. Arguments: action principal target expires_at.
set -eu
mkdir -p data
printf '%s %s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$2" "$3" "${4:-}" >> data/example-access.log
