#!/bin/sh
# install-conf.sh SRC DEST - "meson install" step: install the default configuration unless
# DEST (under $DESTDIR) exists already, so a reinstall never overwrites an edited file.
set -eu
dest="${DESTDIR:-}$2"
if [ -e "$dest" ]; then
	echo "postino: keeping $dest (the new default is $1)"
	exit 0
fi
install -d -m 0755 "$(dirname "$dest")"
install -m 0640 "$1" "$dest"
echo "Installing $1 to $dest"
