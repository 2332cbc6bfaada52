# Sourced (not run: keep it non-executable) by the mysql image's entrypoint on the database's first
# start, as user mysql with the temporary server up: the agent's own user, with the password that
# the db-password service made, and only the rights it needs on its own database.
hacksky_password=$(cat /run/hacksky-secrets/mysql_password)
case $hacksky_password in
    '' | *[!A-Za-z0-9]*) mysql_error "/run/hacksky-secrets/mysql_password: expected letters and digits only" ;;
esac
docker_process_sql <<EOSQL
CREATE USER 'hacksky_edge'@'%' IDENTIFIED BY '${hacksky_password}';
-- readings, alerts, detections, devices: the agent inserts and updates, and never deletes
GRANT SELECT, INSERT, UPDATE ON \`${MYSQL_DATABASE}\`.* TO 'hacksky_edge'@'%';
-- the Alembic migrations it runs on start (central.auto_migrate): tables, indexes, foreign keys
-- (MySQL 8 wants REFERENCES for those), DROP and DELETE (alembic_version) for a downgrade
GRANT CREATE, ALTER, INDEX, REFERENCES, DROP, DELETE ON \`${MYSQL_DATABASE}\`.* TO 'hacksky_edge'@'%';
EOSQL
unset hacksky_password
