#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Create (or refresh) a virtual environment from a requirements file.
# usage: scripts/venv.sh DIR REQUIREMENTS  -- prints nothing when already up to date
set -euo pipefail
dir=$1 req=$2
stamp="$dir/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
echo "venv: creating $dir from $req"
rm -rf "$dir"
python3 -m venv "$dir"
"$dir/bin/python" -m pip install -q --upgrade pip
"$dir/bin/python" -m pip install -q -r "$req"
echo "$want" > "$stamp"
