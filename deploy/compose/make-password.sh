#!/bin/sh
# docker-compose.yml's db-password service, run as root in the agent's image before the database and
# the agent start: makes the agent's MySQL password on first start, into the volume db-secret, and
# keeps it afterwards. Owner: the agent's user; group: the mysql image's mysql group (gid 999), whose
# entrypoint creates the agent's user from it (initdb/agent-user.sh); mode 0440: nobody else reads it.
set -eu
secret=/run/secrets/mysql_password
if [ ! -s "$secret" ]; then
    umask 077
    # 32 letters and digits (190 bits): nothing to quote in SQL or in a URL
    tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$secret.new"
    mv "$secret.new" "$secret"
    echo "made the agent's MySQL password in $secret"
fi
chown "hacksky-edge:${MYSQL_GID:-999}" "$secret"
chmod 0440 "$secret"
