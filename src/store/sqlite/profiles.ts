import type { Database } from "better-sqlite3";
import type { Profile } from "../../domain/profile.ts";
import type { ProfileStore } from "../store.ts";
import type { Sync } from "../sync-store.ts";

/** Also the PostgreSQL store's: the same columns (src/store/postgres/profiles.ts). */
export interface ProfileRow {
  name: string;
  description: string;
  settings: string;
  create_time: number;
  update_time: number;
}

export const profileFromRow = (row: ProfileRow): Profile => ({
  name: row.name,
  description: row.description,
  settings: JSON.parse(row.settings) as Profile["settings"],
  source: "api",
  createTime: row.create_time,
  updateTime: row.update_time,
});

const toRow = (p: Profile): ProfileRow => ({
  name: p.name, description: p.description, settings: JSON.stringify(p.settings), create_time: p.createTime, update_time: p.updateTime,
});

/** Profiles made through the API (the config file's live in memory, see src/api/profiles.ts). */
export function createProfileQueries(db: Database): Sync<ProfileStore> {
  const insert = db.prepare("INSERT INTO profiles (name, description, settings, create_time, update_time) VALUES (@name, @description, @settings, @create_time, @update_time)");
  const byName = db.prepare<[string], ProfileRow>("SELECT * FROM profiles WHERE name = ?");
  const all = db.prepare<[], ProfileRow>("SELECT * FROM profiles ORDER BY name");
  const update = db.prepare("UPDATE profiles SET description = @description, settings = @settings, update_time = @update_time WHERE name = @name");
  const remove = db.prepare("DELETE FROM profiles WHERE name = ?");
  return {
    insert: (profile) => void insert.run(toRow(profile)),
    get: (name) => {
      const row = byName.get(name);
      return row && profileFromRow(row);
    },
    list: () => all.all().map(profileFromRow),
    update: (profile) => update.run(toRow(profile)).changes > 0,
    delete: (name) => remove.run(name).changes > 0,
  };
}
