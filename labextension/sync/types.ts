/**
 * The shapes of the file sync API (`compute-servers/api/servers/{id}/sync`, `.../syncs`):
 * names for `SyncRun`, `SyncRequest` and `SyncSettings` of openapi.json, from the generated
 * types; and the `sync` field of a `sync` event (event_schemas/server-v1.json).
 */
import { components, operations } from '../api/schema';

type Schemas = components['schemas'];

/** One sync, as `GET servers/{id}/syncs/{sync_id}` answers. */
export type ISyncRun = Schemas['SyncRun'] & {
  /**
   * Not the API's: set on a record built from a `sync` event, whose end (its summary, its
   * error) has not been read yet.
   */
  heard?: boolean;
};

/** both: each side's changes go to the other; push: to the server only; pull: from it only. */
export type SyncDirection = Schemas['SyncRun']['direction'];

/** Who asked for a sync: the Sync button (the API), the CLI, a kernel launch, the schedule. */
export type SyncTrigger = Schemas['SyncRun']['trigger'];

/**
 * - `completed` may still list per-file `errors` in its summary;
 * - `failed` has `error` (the server became unreachable, a side looked unmounted...);
 * - `interrupted`: the process running it stopped.
 */
export type SyncState = Schemas['SyncRun']['state'];

/** How far a sync is. */
export type ISyncProgress = NonNullable<Schemas['SyncRun']['progress']>;

export type SyncPhase = ISyncProgress['phase'];

/** What a sync did (so far, while it runs). Lists stop at 1000 entries (`truncated`). */
export type ISyncSummary = NonNullable<Schemas['SyncRun']['summary']>;

export type ISyncConflict = ISyncSummary['conflicts'][number];

export type ISyncSkipped = ISyncSummary['skipped'][number];

export type ISyncError = ISyncSummary['errors'][number];

/** What `GET servers/{id}/syncs` answers. */
export type ISyncList =
  operations['listSyncs']['responses'][200]['content']['application/json'];

/** The body of `POST servers/{id}/sync`. */
export type ISyncRequest = Schemas['SyncRequest'];

/** How a server syncs: its `sync` field; `PATCH servers/{id}` `{sync: {...}}` changes it. */
export type ISyncSettings = Schemas['Server']['sync'];

/** The `sync` field of a `sync` event: the sync's id and state, and its progress. */
export interface ISyncEventData extends Partial<ISyncProgress> {
  id: number;
  state: SyncState;
  direction?: SyncDirection;
  path?: string;
  trigger?: SyncTrigger;
}
