#!/usr/bin/env bash
# Install (Debian packages), start and prepare a local PostgreSQL for the tests.
# Idempotent: safe to run again. Prints the TVM_TEST_POSTGRES_URL to export.
#
#   sudo scripts/ci-postgres.sh && export TVM_TEST_POSTGRES_URL=...
#
# Listens on 127.0.0.1 only (Debian's default). Needs root.
set -euo pipefail

DB_USER=${TVM_PG_USER:-tvm}
DB_PASS=${TVM_PG_PASSWORD:-tvm}
DB_NAME=${TVM_PG_DB:-tvm_test}

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
if ! pg_lsclusters -h | awk '$1=="'"$version"'" && $2=="main" {print $4}' | grep -qx online; then
    pg_ctlcluster "$version" main start
fi

for _ in $(seq 1 50); do
    su postgres -c "pg_isready -q -h 127.0.0.1" && break
    sleep 0.2
done

su postgres -c "psql -v ON_ERROR_STOP=1 -q" <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS';
  END IF;
END \$\$;
-- Tests that run several gateways make a database of their own.
ALTER ROLE $DB_USER CREATEDB;
SQL
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'\"" | grep -q 1; then
    su postgres -c "createdb -O $DB_USER $DB_NAME"
fi

echo "TVM_TEST_POSTGRES_URL=postgresql+asyncpg://$DB_USER:$DB_PASS@127.0.0.1:5432/$DB_NAME"
