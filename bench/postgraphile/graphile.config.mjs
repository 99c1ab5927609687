// PostGraphile 5, the peer of bench/: the amber preset over the bench's PostgreSQL
// database. PgIndexBehaviorsPlugin is off so that `condition` and `orderBy` offer every
// column: the server's indexes are partial or composite (user_id, created_at, id), which
// that plugin does not count, and without them the equivalent of the server's session
// page (one user's live sessions, newest first) cannot be asked for.
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

export default {
  extends: [PostGraphileAmberPreset],
  disablePlugins: ["PgIndexBehaviorsPlugin"],
  pgServices: [
    makePgService({ connectionString: process.env.BENCH_POSTGRES_URL, schemas: ["public"] }),
  ],
  grafserv: {
    host: "127.0.0.1",
    port: Number(process.env.BENCH_PORT || 5678),
  },
};
