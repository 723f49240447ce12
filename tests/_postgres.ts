// A throwaway PostgreSQL server for tests and benchmarks: Debian's
// postgresql package, a fresh data directory in a temp dir, a free
// loopback port, password authentication, removed on stop.

/** A running temporary PostgreSQL. */
export interface TempPostgres {
  /** Superuser URL with password (database `postgres`). */
  url: string;
  /** Port it listens on (127.0.0.1). */
  port: number;
  /** Superuser name and password. */
  user: string;
  password: string;
  /** A URL for `database` (as the superuser unless `user`/`password` are given). */
  urlFor(database: string, user?: string, password?: string): string;
  /** Run SQL as the superuser with psql (in `database`, default `postgres`). */
  psql(sql: string, database?: string): Promise<string>;
  /** Make a fresh, empty database and return its URL. */
  createDatabase(name: string): Promise<string>;
  /** Stop the server (fast shutdown, data kept); {@link TempPostgres.start} brings it back. */
  halt(): Promise<void>;
  /** Start it again on the same port. */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Where Debian puts the server binaries (newest major version first), or undefined. */
export function postgresBin(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((e) => e.name).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const bin = `/usr/lib/postgresql/${v}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        return bin;
      } catch { /* next */ }
    }
  } catch { /* not installed */ }
  return undefined;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", env }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed: ${text}`);
  return text;
}

/**
 * Start a PostgreSQL server in a temp directory. As root, it runs as the
 * `postgres` user (the server refuses to run as root).
 */
export async function startPostgres(): Promise<TempPostgres> {
  const bin = postgresBin();
  if (bin === undefined) {
    throw new Error(
      "PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does this)",
    );
  }
  const root = Deno.uid() === 0;
  const dir = await Deno.makeTempDir({ prefix: "gearman-pg-" });
  const user = "gearman";
  const password = "gearman-test-pw";
  await Deno.writeTextFile(`${dir}/pw`, password);
  if (root) await run("chown", ["-R", "postgres:postgres", dir]);
  const as = (cmd: string, args: string[]) =>
    root ? run("runuser", ["-u", "postgres", "--", cmd, ...args]) : run(cmd, args);
  await as(`${bin}/initdb`, [
    "-D",
    `${dir}/data`,
    "-U",
    user,
    `--pwfile=${dir}/pw`,
    "--auth=scram-sha-256",
    "-E",
    "UTF8",
    "--no-sync",
  ]);
  const port = freePort();
  const start = () =>
    as(`${bin}/pg_ctl`, [
      "-D",
      `${dir}/data`,
      "-w",
      "-l",
      `${dir}/log`,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on`,
      "start",
    ]).then(() => {});
  await start();
  const urlFor = (db: string, u = user, p = password) =>
    `postgres://${encodeURIComponent(u)}:${encodeURIComponent(p)}@127.0.0.1:${port}/${db}`;
  const psql = (sql: string, database = "postgres") =>
    run("psql", [
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      user,
      "-d",
      database,
      "-qAt",
      "-c",
      sql,
    ], {
      PGPASSWORD: password,
    });
  return {
    url: urlFor("postgres"),
    port,
    user,
    password,
    urlFor,
    psql,
    async createDatabase(name: string): Promise<string> {
      await psql(`DROP DATABASE IF EXISTS ${name}`);
      await psql(`CREATE DATABASE ${name}`);
      return urlFor(name);
    },
    async halt(): Promise<void> {
      await as(`${bin}/pg_ctl`, ["-D", `${dir}/data`, "-m", "fast", "-w", "stop"]);
    },
    start,
    async stop(): Promise<void> {
      try {
        await as(`${bin}/pg_ctl`, ["-D", `${dir}/data`, "-m", "immediate", "-w", "stop"]);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}
