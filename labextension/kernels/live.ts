import { Event } from '@jupyterlab/services';
import { Debouncer, Poll } from '@lumino/polling';

import { IComputeServersModel, IServerKernelsModel } from '../tokens';
import { SERVER_EVENT_SCHEMA } from '../servers/types';

/** How soon after a `kernels` event the kernels are re-read (events come in bursts). */
const EVENT_DEBOUNCE_MS = 200;

/**
 * Keeps a kernels model up to date for the running compute servers, while something shows
 * it (`kernels.watched`):
 * - re-reads a server's kernels (debounced) on its `kernels` events;
 * - reads them when a server becomes running, and forgets them when it stops running;
 * - polls, as a fallback for what no event says (a kernel that died on its own); the poll
 *   stands by while nothing shows the kernels or the page is hidden;
 * - catches up (re-reads every running server) when the kernels are shown again.
 * Nothing is read while the kernels are not shown.
 */
export class KernelsLiveUpdates {
  constructor(options: KernelsLiveUpdates.IOptions) {
    this._kernels = options.kernels;
    this._servers = options.servers;
    this._events = options.events ?? null;
    this._debouncer = new Debouncer(() => this._flush(), EVENT_DEBOUNCE_MS);
    this._poll = new Poll({
      auto: options.auto ?? true,
      factory: () => this._refreshAll(),
      frequency: {
        interval: options.interval,
        backoff: true,
        max: Math.max(options.interval, 300 * 1000)
      },
      name: 'jupyter-compute-servers:kernels',
      standby: () => !this._kernels.watched || 'when-hidden'
    });
    this._running = this._runningIds();
    this._events?.stream.connect(this._onEvent, this);
    this._servers.changed.connect(this._onServersChanged, this);
    this._kernels.watchedChanged.connect(this._onWatchedChanged, this);
  }

  /** The fallback poll's interval in milliseconds. */
  get interval(): number {
    return this._poll.frequency.interval;
  }

  set interval(value: number) {
    this._poll.frequency = {
      interval: value,
      backoff: true,
      max: Math.max(value, 300 * 1000)
    };
  }

  get poll(): Poll {
    return this._poll;
  }

  get isDisposed(): boolean {
    return this._poll.isDisposed;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._events?.stream.disconnect(this._onEvent, this);
    this._servers.changed.disconnect(this._onServersChanged, this);
    this._kernels.watchedChanged.disconnect(this._onWatchedChanged, this);
    this._debouncer.dispose();
    this._poll.dispose();
  }

  private _runningIds(): Set<number> {
    return new Set(
      this._servers.servers.filter(s => s.state === 'running').map(s => s.id)
    );
  }

  private _onEvent(_: Event.IManager, event: Event.Emission): void {
    if (
      event.schema_id !== SERVER_EVENT_SCHEMA ||
      event.kind !== 'kernels' ||
      typeof event.server_id !== 'number' ||
      !this._kernels.watched
    ) {
      return;
    }
    this._pending.add(event.server_id);
    void this._debouncer.invoke();
  }

  private _onServersChanged(): void {
    const running = this._runningIds();
    for (const id of this._running) {
      if (!running.has(id)) {
        this._kernels.forget(id);
      }
    }
    if (this._kernels.watched) {
      for (const id of running) {
        if (!this._running.has(id)) {
          void this._kernels.refresh(id);
        }
      }
    }
    this._running = running;
  }

  private _onWatchedChanged(_: IServerKernelsModel, watched: boolean): void {
    if (watched) {
      void this._refreshAll();
    }
  }

  private async _flush(): Promise<void> {
    const ids = [...this._pending];
    this._pending.clear();
    await Promise.all(ids.map(id => this._kernels.refresh(id)));
  }

  private async _refreshAll(): Promise<void> {
    if (!this._kernels.watched) {
      return;
    }
    await Promise.all([...this._running].map(id => this._kernels.refresh(id)));
  }

  private _kernels: IServerKernelsModel;
  private _servers: IComputeServersModel;
  private _events: Event.IManager | null;
  private _debouncer: Debouncer;
  private _poll: Poll;
  private _running: Set<number>;
  private _pending = new Set<number>();
}

export namespace KernelsLiveUpdates {
  export interface IOptions {
    kernels: IServerKernelsModel;
    /** The compute servers, for which of them are running. */
    servers: IComputeServersModel;
    /** The Jupyter Server events to listen to; without, only the poll runs. */
    events?: Event.IManager | null;
    /** The fallback poll's interval in milliseconds. */
    interval: number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}
