import { Debouncer, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IComputeServersModel,
  IServerDetailsModel,
  IServerEntry,
  IServerEvent,
  IServerEvents
} from '../tokens';

/**
 * Entries read per compute server from the REST API (`read`), with the bookkeeping the sidebar
 * models share: answers that arrive after a newer request's are dropped, a failure keeps the
 * last value with its error, and `changed` says which server changed.
 */
export class ServerDetailsStore<T> implements IServerDetailsModel {
  constructor(
    private readonly _read: (serverId: number) => Promise<T>,
    empty: T
  ) {
    this._emptyEntry = Object.freeze({
      value: empty,
      loaded: false,
      error: null,
      at: 0
    });
  }

  /** Emitted with a server's id whenever its entry changes. */
  get changed(): ISignal<this, number> {
    return this._changed;
  }

  get watched(): boolean {
    return this._watched;
  }

  set watched(value: boolean) {
    if (value !== this._watched) {
      this._watched = value;
      this._watchedChanged.emit(value);
    }
  }

  get watchedChanged(): ISignal<this, boolean> {
    return this._watchedChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  entry(serverId: number): IServerEntry<T> {
    return this._entries.get(serverId) ?? this._emptyEntry;
  }

  async refresh(serverId: number): Promise<void> {
    const ticket = this.nextTicket(serverId);
    let next: IServerEntry<T>;
    try {
      const value = await this._read(serverId);
      next = { value, loaded: true, error: null, at: Date.now() };
    } catch (error) {
      next = {
        ...this.entry(serverId),
        error: error instanceof Error ? error.message : String(error)
      };
    }
    if (this._isDisposed || this._tickets.get(serverId) !== ticket) {
      return;
    }
    this.set(serverId, next);
  }

  forget(serverId: number): void {
    this.nextTicket(serverId);
    if (this._entries.delete(serverId)) {
      this._changed.emit(serverId);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    Signal.clearData(this);
  }

  /** Put an entry in at once (after a change made here), whatever a read on its way says. */
  protected set(serverId: number, entry: IServerEntry<T>): void {
    this._entries.set(serverId, entry);
    this._changed.emit(serverId);
  }

  /** Drop the answers of the reads under way for a server. */
  protected nextTicket(serverId: number): number {
    const ticket = (this._tickets.get(serverId) ?? 0) + 1;
    this._tickets.set(serverId, ticket);
    return ticket;
  }

  private _emptyEntry: IServerEntry<T>;
  private _entries = new Map<number, IServerEntry<T>>();
  private _tickets = new Map<number, number>();
  private _watched = false;
  private _isDisposed = false;
  private _changed = new Signal<this, number>(this);
  private _watchedChanged = new Signal<this, boolean>(this);
}

/** How soon after an event a server's entry is re-read (events come in bursts). */
const EVENT_DEBOUNCE_MS = 200;

/**
 * Keeps a per-server model up to date for the running compute servers, while something shows
 * it (`model.watched`):
 * - re-reads a server's entry (debounced) on its events of `kind`, if any;
 * - reads it when a server becomes running, and forgets it when the server stops running;
 * - polls every running server; the poll stands by while nothing shows the model or the page
 *   is hidden;
 * - catches up (re-reads every running server) when the model is shown again.
 * Nothing is read while the model is not shown.
 */
export class ServerDetailsLiveUpdates {
  constructor(options: ServerDetailsLiveUpdates.IOptions) {
    this._model = options.model;
    this._servers = options.servers;
    this._events = options.events ?? null;
    this._kind = options.kind ?? null;
    this._backoff = options.backoff ?? true;
    this._debouncer = new Debouncer(() => this._flush(), EVENT_DEBOUNCE_MS);
    this._poll = new Poll({
      auto: options.auto ?? true,
      factory: () => this._refreshAll(),
      frequency: this._frequency(options.interval),
      name: options.name,
      standby: () => !this._model.watched || 'when-hidden'
    });
    this._running = this._runningIds();
    if (this._kind) {
      this._events?.stream.connect(this._onEvent, this);
    }
    this._servers.changed.connect(this._onServersChanged, this);
    this._model.watchedChanged.connect(this._onWatchedChanged, this);
  }

  /** The poll's interval in milliseconds. */
  get interval(): number {
    return this._poll.frequency.interval;
  }

  set interval(value: number) {
    this._poll.frequency = this._frequency(value);
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
    this._model.watchedChanged.disconnect(this._onWatchedChanged, this);
    this._debouncer.dispose();
    this._poll.dispose();
  }

  private _frequency(interval: number) {
    return this._backoff
      ? { interval, backoff: true, max: Math.max(interval, 300 * 1000) }
      : { interval, backoff: false, max: interval };
  }

  private _runningIds(): Set<number> {
    return new Set(
      this._servers.servers.filter(s => s.state === 'running').map(s => s.id)
    );
  }

  private _onEvent(_: IServerEvents, event: IServerEvent): void {
    if (
      event.kind !== this._kind ||
      event.server_id === null ||
      !this._model.watched
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
        this._model.forget(id);
      }
    }
    if (this._model.watched) {
      for (const id of running) {
        if (!this._running.has(id)) {
          void this._model.refresh(id);
        }
      }
    }
    this._running = running;
  }

  private _onWatchedChanged(_: unknown, watched: boolean): void {
    if (watched) {
      void this._refreshAll();
    }
  }

  private async _flush(): Promise<void> {
    const ids = [...this._pending];
    this._pending.clear();
    await Promise.all(ids.map(id => this._model.refresh(id)));
  }

  private async _refreshAll(): Promise<void> {
    if (!this._model.watched) {
      return;
    }
    await Promise.all([...this._running].map(id => this._model.refresh(id)));
  }

  private _model: IServerDetailsModel;
  private _servers: IComputeServersModel;
  private _events: IServerEvents | null;
  private _kind: string | null;
  private _backoff: boolean;
  private _debouncer: Debouncer;
  private _poll: Poll;
  private _running: Set<number>;
  private _pending = new Set<number>();
}

export namespace ServerDetailsLiveUpdates {
  export interface IOptions {
    model: IServerDetailsModel;
    /** The compute servers, for which of them are running. */
    servers: IComputeServersModel;
    /** The server extension's events; without, only the poll runs. */
    events?: IServerEvents | null;
    /** The kind of the server events that say a server's entry changed; none by default. */
    kind?: string | null;
    /** The poll's interval in milliseconds. */
    interval: number;
    /** Whether the poll slows down after failures (default true). */
    backoff?: boolean;
    /** Start polling at once (default true). */
    auto?: boolean;
    /** The poll's name, for debugging. */
    name: string;
  }
}
