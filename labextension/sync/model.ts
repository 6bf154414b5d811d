import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, requestAPI } from '../request';
import { describeError } from '../servers/actions';
import { ServerDetailsStore } from '../servers/details';
import { IServerEntry, IServerSyncs, ISyncModel } from '../tokens';
import {
  ISyncEventData,
  ISyncList,
  ISyncRun,
  ISyncRequest,
  SyncPhase
} from './types';

/** How many syncs a server's entry keeps (the API answers the last 20). */
const KEEP = 20;

export const EMPTY_SYNCS: IServerSyncs = Object.freeze({
  runs: Object.freeze([]) as ReadonlyArray<ISyncRun>,
  running: null,
  defaultExcludes: Object.freeze([]) as ReadonlyArray<string>
});

/** The syncs' path under the API, for a server. */
export function syncsEndPoint(serverId: number, syncId?: number): string {
  return syncId === undefined
    ? `servers/${serverId}/syncs`
    : `servers/${serverId}/syncs/${syncId}`;
}

/**
 * Which of two records of the same sync is newer: an ended sync never runs again, and a
 * running one is further along when it has run longer.
 */
export function newerRun(a: ISyncRun, b: ISyncRun): ISyncRun {
  const aDone = a.state !== 'running';
  const bDone = b.state !== 'running';
  if (aDone !== bDone) {
    return aDone ? a : b;
  }
  if (aDone) {
    // Both ended: the one read over the one heard (an event has no summary, no error).
    return b.heard && !a.heard ? a : b;
  }
  return (b.progress?.elapsed ?? -1) > (a.progress?.elapsed ?? -1) ? b : a;
}

/** Merge what was read or heard about a server's syncs into what was known. */
export function mergeSyncs(
  known: IServerSyncs,
  incoming: IServerSyncs
): IServerSyncs {
  const byId = new Map<number, ISyncRun>();
  for (const run of [...known.runs, ...incoming.runs]) {
    const other = byId.get(run.id);
    byId.set(run.id, other ? newerRun(other, run) : run);
  }
  const runs = [...byId.values()].sort((a, b) => b.id - a.id).slice(0, KEEP);
  const running = runs.find(r => r.state === 'running')?.id ?? null;
  return {
    runs,
    running,
    defaultExcludes:
      incoming.defaultExcludes.length > 0
        ? incoming.defaultExcludes
        : known.defaultExcludes
  };
}

/** A sync's record as a `sync` event tells it (no summary: that is read once it ends). */
export function runFromEvent(
  serverId: number,
  data: ISyncEventData,
  known: ISyncRun | undefined,
  now = Date.now() / 1000
): ISyncRun {
  const hasProgress = typeof data.phase === 'string';
  const progress = hasProgress
    ? {
        phase: data.phase as SyncPhase,
        files_total: data.files_total ?? 0,
        files_done: data.files_done ?? 0,
        bytes_total: data.bytes_total ?? 0,
        bytes_done: data.bytes_done ?? 0,
        rate: data.rate ?? 0,
        eta_seconds: data.eta_seconds ?? null,
        elapsed: data.elapsed ?? 0
      }
    : (known?.progress ?? null);
  return {
    id: data.id,
    server_id: serverId,
    direction: data.direction ?? known?.direction ?? 'both',
    path: data.path ?? known?.path ?? '',
    trigger: data.trigger ?? known?.trigger ?? 'api',
    state: data.state,
    started:
      known?.started ??
      (typeof data.elapsed === 'number' ? now - data.elapsed : now),
    finished: data.state === 'running' ? null : (known?.finished ?? now),
    error: known?.error ?? null,
    progress,
    summary: known?.summary ?? null,
    heard: true
  };
}

/**
 * The file syncs of each compute server: the latest ones read from `servers/{id}/syncs`, kept
 * up to date between reads by the `sync` events (`applyEvent`), with start and cancel. What is
 * read or heard is merged, so an older answer never takes a sync back.
 */
export class SyncModel
  extends ServerDetailsStore<IServerSyncs>
  implements ISyncModel
{
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super(async serverId => {
      const data = await requestAPI<ISyncList>(
        syncsEndPoint(serverId),
        {},
        serverSettings
      );
      return {
        runs: data.syncs,
        running: data.running,
        defaultExcludes: data.default_excludes
      };
    }, EMPTY_SYNCS);
  }

  /** Emitted with a sync as it ends (as read after its last event). */
  get ended(): ISignal<this, ISyncRun> {
    return this._ended;
  }

  entry(serverId: number): IServerEntry<IServerSyncs> {
    return super.entry(serverId);
  }

  latest(serverId: number): ISyncRun | null {
    return this.entry(serverId).value.runs[0] ?? null;
  }

  actionError(serverId: number): string | null {
    return this._actionErrors.get(serverId) ?? null;
  }

  /** Start a sync; it shows at once as running. A refusal is kept (`actionError`) and thrown. */
  async start(serverId: number, request: ISyncRequest = {}): Promise<ISyncRun> {
    this._setActionError(serverId, null);
    try {
      const run = await requestAPI<ISyncRun>(
        `servers/${serverId}/sync`,
        { method: 'POST', body: request },
        this.serverSettings
      );
      this._merge(serverId, [run]);
      return run;
    } catch (error) {
      this._setActionError(serverId, describeSyncError(error));
      // Already running (here or in another process): show that one.
      if (error instanceof ApiError && error.status === 409) {
        void this.refresh(serverId);
      }
      throw error;
    }
  }

  /** Ask a running sync to stop; it ends as cancelled soon after. */
  async cancel(serverId: number, syncId: number): Promise<ISyncRun> {
    this._setActionError(serverId, null);
    try {
      const run = await requestAPI<ISyncRun>(
        `${syncsEndPoint(serverId, syncId)}/cancel`,
        { method: 'POST', body: {} },
        this.serverSettings
      );
      this._merge(serverId, [run]);
      return run;
    } catch (error) {
      this._setActionError(serverId, describeSyncError(error));
      void this.refreshRun(serverId, syncId);
      throw error;
    }
  }

  /** Read one sync again (its progress, or its summary once it has ended). Never rejects. */
  async refreshRun(serverId: number, syncId: number): Promise<void> {
    let run: ISyncRun;
    try {
      run = await requestAPI<ISyncRun>(
        syncsEndPoint(serverId, syncId),
        {},
        this.serverSettings
      );
    } catch (error) {
      console.warn(
        `Could not read sync ${syncId} of server ${serverId}.`,
        error
      );
      return;
    }
    if (!this.isDisposed) {
      this._merge(serverId, [run]);
    }
  }

  /** What a `sync` event says: progress in place; an end is read for its summary. */
  applyEvent(serverId: number, data: ISyncEventData): void {
    if (typeof data?.id !== 'number' || typeof data.state !== 'string') {
      return;
    }
    const known = this.entry(serverId).value.runs.find(r => r.id === data.id);
    this._merge(serverId, [runFromEvent(serverId, data, known)]);
  }

  forget(serverId: number): void {
    this._actionErrors.delete(serverId);
    super.forget(serverId);
  }

  /** Keep what is newer, whatever order reads and events arrive in. */
  protected set(serverId: number, entry: IServerEntry<IServerSyncs>): void {
    const before = this.entry(serverId).value;
    const value = mergeSyncs(before, entry.value);
    super.set(serverId, { ...entry, value });
    for (const run of value.runs) {
      if (run.state === 'running' || run.heard) {
        this._unread.add(run.id);
      } else if (this._unread.delete(run.id)) {
        // Seen running (or heard ending) here, and now read as ended: not the history.
        this._ended.emit(run);
      }
    }
  }

  private _merge(serverId: number, runs: ISyncRun[]): void {
    const entry = this.entry(serverId);
    this.set(serverId, {
      ...entry,
      value: { ...entry.value, runs }
    });
  }

  private _setActionError(serverId: number, message: string | null): void {
    const current = this._actionErrors.get(serverId) ?? null;
    if (current === message) {
      return;
    }
    if (message === null) {
      this._actionErrors.delete(serverId);
    } else {
      this._actionErrors.set(serverId, message);
    }
    // The entry as it is, to say that the server's syncs (their error) changed.
    super.set(serverId, this.entry(serverId));
  }

  private _actionErrors = new Map<number, string>();
  /** Syncs seen running, or heard ending, whose end has not been read yet. */
  private _unread = new Set<number>();
  private _ended = new Signal<this, ISyncRun>(this);
}

/** Why a sync could not start (or be cancelled), and what to do. */
export function describeSyncError(error: unknown): string {
  if (error instanceof ApiError && error.status === 409) {
    // "not running", or "already running" (with sync_id): the server's words say which.
    return error.message;
  }
  return describeError(error);
}
