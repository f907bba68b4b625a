# docs/postgres.md's example (DAR_DATABASE_URL names the server).
import os
from psycopg_pool import ConnectionPool
from dar import Runtime
from dar.store.postgres import PostgresStore

url = os.environ["DAR_DATABASE_URL"]        # e.g. postgresql://dar_app@db.internal/app
rt = Runtime(f"{url}?schema=agents")        # opens its own pool
rt.close()
# or share the application's pool (connections must be autocommit, or idle when taken):
pool = ConnectionPool(url, kwargs={"autocommit": True})
rt = Runtime(PostgresStore(pool, schema="agents"))
rt.close()
pool.close()
