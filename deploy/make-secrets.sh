#!/usr/bin/env sh
# Create deploy/secrets/ with a random PostgreSQL password and the matching results DSN (run once, from any
# directory). Existing files are kept, so running it again never changes a password under a live database.
set -eu
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
if [ ! -s "$dir/postgres_password" ]; then
    # URL-safe characters only, so the password can stand in the DSN as it is.
    LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 40 > "$dir/postgres_password"
fi
if [ ! -s "$dir/results_dsn" ]; then
    printf 'postgresql://alphaloom:%s@postgres:5432/alphaloom\n' "$(cat "$dir/postgres_password")" > "$dir/results_dsn"
fi
# The containers read the files as their own users: postgres (uid 999) and alphaloom (uid 10001). The
# directory's 0700 keeps other host users out, so the files themselves can be readable by those uids.
chmod 444 "$dir/postgres_password" "$dir/results_dsn"
echo "secrets in $dir: postgres_password, results_dsn"
