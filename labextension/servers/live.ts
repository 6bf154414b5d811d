import { Debouncer, IPoll, Poll } from '@lumino/polling';

import { IComputeServersModel, IServerEvents } from '../tokens';
import { isTransitional } from './format';

/** How soon after an event the list is re-read (events come in bursts). */
const EVENT_DEBOUNCE_MS = 200;
/** How often the list is re-read while an operation is under way. */
const BUSY_INTERVAL_MS = 2000;

/**
 * Keeps a servers model up to date: re-reads the list (debounced) on the server extension's
 * events, and polls as a fallback, for changes the events do not carry (the
 * command line, another Jupyter server on the same store). The poll stands by while the page
 * is hidden, and runs faster while a server is starting, stopping and so on.
 */
export class LiveUpdates {
  constructor(options: LiveUpdates.IOptions) {
    this._model = options.model;
    this._events = options.events ?? null;
    this._interval = options.interval;
    this._debouncer = new Debouncer(
      () => this._model.refresh(),
      EVENT_DEBOUNCE_MS
    );
    this._poll = new Poll({
      auto: options.auto ?? true,
      factory: () => this._model.refresh(),
      frequency: this._frequency(),
      name: 'jupyter-compute-servers:servers',
      standby: options.standby ?? 'when-hidden'
    });
    this._events?.stream.connect(this._onEvent, this);
    this._model.changed.connect(this._onModelChanged, this);
  }

  /** The fallback poll's interval in milliseconds when nothing is under way. */
  get interval(): number {
    return this._interval;
  }

  set interval(value: number) {
    this._interval = value;
    this._updateFrequency();
  }

  /** The poll, for tests and for callers that want to refresh now (`poll.refresh()`). */
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
    this._model.changed.disconnect(this._onModelChanged, this);
    this._debouncer.dispose();
    this._poll.dispose();
  }

  private _onEvent(): void {
    void this._debouncer.invoke();
  }

  private _onModelChanged(): void {
    this._updateFrequency();
  }

  private _updateFrequency(): void {
    const next = this._frequency();
    const current = this._poll.frequency;
    if (current.interval !== next.interval || current.max !== next.max) {
      this._poll.frequency = next;
    }
  }

  private _frequency(): IPoll.Frequency {
    const busy = this._model.servers.some(s => isTransitional(s.state));
    const interval = busy
      ? Math.min(this._interval, BUSY_INTERVAL_MS)
      : this._interval;
    return { interval, backoff: true, max: Math.max(interval, 300 * 1000) };
  }

  private _model: IComputeServersModel;
  private _events: IServerEvents | null;
  private _interval: number;
  private _debouncer: Debouncer;
  private _poll: Poll;
}

export namespace LiveUpdates {
  export interface IOptions {
    model: IComputeServersModel;
    /** The server extension's events; without, only the poll runs. */
    events?: IServerEvents | null;
    /** The poll's interval in milliseconds. */
    interval: number;
    /** Start polling at once (default true). */
    auto?: boolean;
    standby?: Poll.Standby | (() => boolean | Poll.Standby);
  }
}
