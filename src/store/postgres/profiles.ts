import pg from "pg";
import { AlreadyExistsError } from "../../errors.ts";
import type { Profile } from "../../domain/profile.ts";
import type { ProfileStore } from "../store.ts";
import type { Sql } from "./sql.ts";
import { profileFromRow, type ProfileRow } from "../sqlite/profiles.ts";

/** Profiles made through the API, as SQLite has them (settings: JSON ProfileSettings as TEXT). */
export const PROFILES_SCHEMA = `
CREATE TABLE profiles (
  name TEXT PRIMARY KEY,
  description TEXT NOT NULL,
  settings TEXT NOT NULL,       -- JSON ProfileSettings
  create_time BIGINT NOT NULL,
  update_time BIGINT NOT NULL
);
`;

const UNIQUE_VIOLATION = "23505";

/**
 * Profiles made through the API (the config file's live in memory, see src/api/profiles.ts); each query
 * takes the executor first.
 */
export function createProfileQueries() {
  return {
    async insert(db: Sql, p: Profile): Promise<void> {
      try {
        await db.query("INSERT INTO profiles (name, description, settings, create_time, update_time) VALUES ($1, $2, $3, $4, $5)",
          [p.name, p.description, JSON.stringify(p.settings), p.createTime, p.updateTime]);
      } catch (err) {
        // The API looks the name up first, but another daemon may create the same name in between.
        if (err instanceof pg.DatabaseError && err.code === UNIQUE_VIOLATION) throw new AlreadyExistsError(`profile "${p.name}" already exists`);
        throw err;
      }
    },
    async get(db: Sql, name: string): Promise<Profile | undefined> {
      const { rows } = await db.query<ProfileRow>("SELECT * FROM profiles WHERE name = $1", [name]);
      return rows[0] && profileFromRow(rows[0]);
    },
    // Byte order (COLLATE "C"), as SQLite sorts, whatever the database's collation.
    list: async (db: Sql): Promise<Profile[]> => (await db.query<ProfileRow>(`SELECT * FROM profiles ORDER BY name COLLATE "C"`)).rows.map(profileFromRow),
    update: async (db: Sql, p: Profile): Promise<boolean> =>
      ((await db.query("UPDATE profiles SET description = $2, settings = $3, update_time = $4 WHERE name = $1",
        [p.name, p.description, JSON.stringify(p.settings), p.updateTime])).rowCount ?? 0) > 0,
    delete: async (db: Sql, name: string): Promise<boolean> => ((await db.query("DELETE FROM profiles WHERE name = $1", [name])).rowCount ?? 0) > 0,
  };
}

export type ProfileQueries = ReturnType<typeof createProfileQueries>;

/** The ProfileStore over a pool (every method one statement). */
export function createProfileStore(pool: pg.Pool, queries: ProfileQueries): ProfileStore {
  return {
    insert: (profile) => queries.insert(pool, profile),
    get: (name) => queries.get(pool, name),
    list: () => queries.list(pool),
    update: (profile) => queries.update(pool, profile),
    delete: (name) => queries.delete(pool, name),
  };
}
