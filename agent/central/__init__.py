"""The central database: engine, schema, migrations, the batched writer, bulk import."""
