/**
 * The shapes of the file sync API (`compute-servers/api/servers/{id}/sync`, `.../syncs`), as
 * the server extension writes them (see `SyncRun` and `SyncSettings` in openapi.json).
 */

/** both: each side's changes go to the other; push: to the server only; pull: from it only. */
export type SyncDirection = 'both' | 'push' | 'pull';

/** Who asked for a sync: the Sync button (the API), the CLI, a kernel launch, the schedule. */
export type SyncTrigger = 'api' | 'cli' | 'kernel' | 'auto';

/**
 * - `completed` may still list per-file `errors` in its summary;
 * - `failed` has `error` (the server became unreachable, a side looked unmounted...);
 * - `interrupted`: the process running it stopped.
 */
export type SyncState =
  'running' | 'completed' | 'failed' | 'cancelled' | 'interrupted';

export type SyncPhase =
  'starting' | 'scanning' | 'comparing' | 'transferring' | 'done';

/** How far a sync is. */
export interface ISyncProgress {
  phase: SyncPhase | string;
  /** Files to copy, delete or chmod. */
  files_total: number;
  files_done: number;
  /** Bytes to copy. */
  bytes_total: number;
  bytes_done: number;
  /** Bytes per second over the last seconds. */
  rate: number;
  /** Time left at that rate (while transferring), or null. */
  eta_seconds: number | null;
  /** Seconds since the sync began. */
  elapsed: number;
}

export interface ISyncConflict {
  /** The file, with the Jupyter root's version, on both sides (relative to the Jupyter root). */
  path: string;
  /** Where the server's version was kept, on both sides (null when not resolved). */
  conflict_path: string | null;
  /** False with push and pull: nothing was written; a two-way sync keeps both. */
  resolved: boolean;
}

export interface ISyncSkipped {
  path: string;
  side: 'local' | 'remote' | 'both';
  /** e.g. "larger than the size limit (1024.0 MB)", "symbolic link", "virtual environment". */
  reason: string;
}

export interface ISyncError {
  path: string;
  message: string;
}

/** What a sync did (so far, while it runs). Lists stop at 1000 entries (`truncated`). */
export interface ISyncSummary {
  /** Copied from the Jupyter root to the server. */
  sent: { files: number; bytes: number };
  /** Copied from the server to the Jupyter root. */
  received: { files: number; bytes: number };
  /** Deleted in the Jupyter root (local) and on the server (remote). */
  deleted: { local: number; remote: number };
  chmod?: { local: number; remote: number };
  conflicts: ISyncConflict[];
  skipped: ISyncSkipped[];
  errors: ISyncError[];
  changes?: { path: string; action: string }[];
  /** Changes left for a sync in the other direction (push and pull). */
  pending?: number;
  truncated?: boolean;
}

/** One sync, as `GET servers/{id}/syncs/{sync_id}` answers. */
export interface ISyncRun {
  id: number;
  server_id: number;
  direction: SyncDirection;
  path: string;
  trigger: SyncTrigger | string;
  state: SyncState;
  /** Unix time. */
  started: number;
  finished: number | null;
  error: string | null;
  progress: ISyncProgress | null;
  summary: ISyncSummary | null;
  /**
   * Not the API's: set on a record built from a `sync` event, whose end (its summary, its
   * error) has not been read yet.
   */
  heard?: boolean;
}

/** What `GET servers/{id}/syncs` answers. */
export interface ISyncList {
  /** The last 20 syncs, newest first. */
  syncs: ISyncRun[];
  /** The id of the sync running now in this Jupyter server, if any. */
  running: number | null;
  /** gitignore lines every sync excludes first (a server's own come after). */
  default_excludes: string[];
}

/** The body of `POST servers/{id}/sync`. */
export interface ISyncRequest {
  direction?: SyncDirection;
  /** A file or directory relative to the Jupyter root; empty for everything. */
  path?: string;
}

/** How a server syncs: its `sync` field; `PATCH servers/{id}` `{sync: {...}}` changes it. */
export interface ISyncSettings {
  /** gitignore lines applied to both sides after the default ones. */
  excludes: string[];
  /** Directories (relative to the workspace) that never sync: scratch space on the server. */
  server_only: string[];
  /** Files larger than this are skipped and reported; null: no limit. */
  max_file_size_mb: number | null;
  /** While the server runs, sync both ways this long after the last sync ended; null: off. */
  auto_sync_minutes: number | null;
  /** Push the notebook's directory before a kernel starts on the server. */
  before_kernel: boolean;
}

/** The `sync` field of a `sync` event: the sync's id and state, and its progress. */
export interface ISyncEventData extends Partial<ISyncProgress> {
  id: number;
  state: SyncState;
  direction?: SyncDirection;
  path?: string;
  trigger?: SyncTrigger | string;
}
