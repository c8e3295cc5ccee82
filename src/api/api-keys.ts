import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { ApiKeySchema } from "../../gen/hypervisord/v1/access_pb.js";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { generateApiKey, hashApiKey, keyPrefix } from "../auth/api-key.ts";
import { roleOf } from "../auth/config-keys.ts";
import type { ApiKey } from "../domain/access.ts";
import { uuidv7 } from "../engine/uuid-v7.ts";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errors.ts";
import type { ApiKeyStore } from "../store/store.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";

type ApiKeyHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "createApiKey" | "listApiKeys" | "revokeApiKey">;

const MAX_NAME_LENGTH = 64;

/** CreateApiKey, ListApiKeys, RevokeApiKey. The key is returned once, by CreateApiKey; only its hash is kept. */
export interface ApiKeyHandlerOptions {
  now?: () => number;
  /** After a key was created or revoked: the auth hook's cache forgets what it looked up. */
  onChange?: () => void;
}

export function createApiKeyHandlers(store: ApiKeyStore, options: ApiKeyHandlerOptions = {}): ApiKeyHandlers {
  const now = options.now ?? Date.now;
  return {
    async createApiKey(request) {
      const name = request.name.trim();
      if (!name) throw new InvalidArgumentError("name", "required");
      if (name.length > MAX_NAME_LENGTH) throw new InvalidArgumentError("name", `at most ${MAX_NAME_LENGTH} characters, got ${name.length}`);
      const role = roleOf(request.role, "role");
      const time = now();
      const expireTime = request.expireTime && timestampMs(request.expireTime);
      if (expireTime !== undefined && expireTime <= time) throw new InvalidArgumentError("expire_time", "must be in the future");
      const key = generateApiKey();
      const record: ApiKey = {
        id: `key_${uuidv7(time)}`, name, role, keyHash: hashApiKey(key), prefix: keyPrefix(key), source: "api", createTime: time, expireTime,
      };
      await store.insert(record);
      options.onChange?.();
      return { apiKey: apiKeyToPb(record), key };
    },

    async listApiKeys() {
      return { apiKeys: (await store.list()).map(apiKeyToPb) };
    },

    async revokeApiKey(request) {
      const id = request.id.trim();
      if (!id) throw new InvalidArgumentError("id", "required");
      const key = await store.get(id);
      if (!key) throw new NotFoundError(`API key ${id} not found`);
      if (key.source === "config") throw new FailedPreconditionError(`API key ${id} is defined in the config file (auth.api_keys "${key.name}"); remove it there`);
      // Revoking a revoked key changes nothing and is no error: the caller's intent holds.
      if (key.revokeTime === undefined) {
        await store.revoke(id, now());
        options.onChange?.();
      }
      return { apiKey: apiKeyToPb((await store.get(id))!) };
    },
  };
}

/** Never the key nor its hash: the prefix is what recognises a key. */
function apiKeyToPb(key: ApiKey): MessageInitShape<typeof ApiKeySchema> {
  const ts = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));
  return {
    id: key.id,
    name: key.name,
    role: key.role,
    createTime: ts(key.createTime),
    lastUsedTime: ts(key.lastUsedTime),
    expireTime: ts(key.expireTime),
    revokeTime: ts(key.revokeTime),
    prefix: key.prefix,
    source: key.source,
  };
}
