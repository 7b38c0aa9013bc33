"""Where state is kept, behind small interfaces (`stores.interfaces`), one backend per URL
(`stores.factory.open_store`): `memory` (one process: keys and glossaries in their JSON files,
usage and session context in memory), `sqlite:///path` (one host, several processes) and
`redis://` / `rediss://` (several hosts). Only this package talks to a store server."""
