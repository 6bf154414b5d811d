import { Poll } from '@lumino/polling';

import { ServerDetailsLiveUpdates } from '../servers/details';
import {
  IComputeServersModel,
  IServerEvent,
  IServerEvents,
  ISyncModel
} from '../tokens';

/** How often a running sync is read when its events stop coming, in ms. */
const RUNNING_INTERVAL_MS = 2000;

/**
 * Keeps a sync model up to date:
 * - every `sync` event is taken in at once (its progress needs no request), and a sync that
 *   ended is read once for its summary;
 * - a running sync whose events stop coming (the event socket dropped) is read every two
 *   seconds until they come again or it ends;
 * - the running servers' latest syncs are read while the sidebar shows them (when a server
 *   starts, when the sidebar shows again, and on a slow poll for syncs started elsewhere).
 */
export class SyncLiveUpdates {
  constructor(options: SyncLiveUpdates.IOptions) {
    this._model = options.model;
    this._servers = options.servers;
    this._events = options.events ?? null;
    this._details = new ServerDetailsLiveUpdates({
      model: options.model,
      servers: options.servers,
      events: null,
      interval: options.interval,
      auto: options.auto,
      name: 'jupyter-compute-servers:syncs'
    });
    this._running = new Poll({
      auto: options.auto ?? true,
      factory: () => this._readQuietRuns(),
      frequency: {
        interval: options.runningInterval ?? RUNNING_INTERVAL_MS,
        backoff: false
      },
      name: 'jupyter-compute-servers:running-syncs',
      standby: () => !this._anyRunning() || 'when-hidden'
    });
    this._events?.stream.connect(this._onEvent, this);
  }

  /** The slow poll's interval in milliseconds. */
  get interval(): number {
    return this._details.interval;
  }

  set interval(value: number) {
    this._details.interval = value;
  }

  get isDisposed(): boolean {
    return this._running.isDisposed;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._events?.stream.disconnect(this._onEvent, this);
    this._details.dispose();
    this._running.dispose();
  }

  private _onEvent(_: IServerEvents, event: IServerEvent): void {
    const data = event.sync;
    if (event.kind !== 'sync' || event.server_id === null || !data) {
      return;
    }
    const serverId = event.server_id;
    const key = `${serverId}/${data.id}`;
    this._model.applyEvent(serverId, data);
    if (data.state === 'running') {
      this._heard.set(key, Date.now());
    } else {
      this._heard.delete(key);
      void this._model.refreshRun(serverId, data.id);
    }
  }

  private _anyRunning(): boolean {
    return this._servers.servers.some(
      s => this._model.entry(s.id).value.running !== null
    );
  }

  private async _readQuietRuns(): Promise<void> {
    const now = Date.now();
    const quiet = now - (this._running.frequency.interval * 3) / 4;
    const reads: Promise<void>[] = [];
    const active = new Set<string>();
    for (const server of this._servers.servers) {
      const running = this._model.entry(server.id).value.running;
      if (running === null) {
        continue;
      }
      const key = `${server.id}/${running}`;
      active.add(key);
      const heard = this._heard.get(key);
      if (heard === undefined) {
        // Just seen (started here, or read): its events have a moment to come.
        this._heard.set(key, now);
      } else if (heard < quiet) {
        reads.push(this._model.refreshRun(server.id, running));
      }
    }
    for (const key of this._heard.keys()) {
      if (!active.has(key)) {
        this._heard.delete(key);
      }
    }
    await Promise.all(reads);
  }

  private _model: ISyncModel;
  private _servers: IComputeServersModel;
  private _events: IServerEvents | null;
  private _details: ServerDetailsLiveUpdates;
  private _running: Poll;
  /** When each running sync (`serverId/syncId`) was last heard of. */
  private _heard = new Map<string, number>();
}

export namespace SyncLiveUpdates {
  export interface IOptions {
    model: ISyncModel;
    /** The compute servers, for which of them are running. */
    servers: IComputeServersModel;
    /** The server extension's events; without, only the polls run. */
    events?: IServerEvents | null;
    /** The slow poll's interval in milliseconds (the panel's refresh interval). */
    interval: number;
    /** How often a running sync is read while no event comes, in ms (default 2000). */
    runningInterval?: number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}
