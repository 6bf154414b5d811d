import { ServerConnection } from '@jupyterlab/services';
import { Debouncer, Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from '../request';
import { ICostsModel, IServerEvent, IServerEvents } from '../tokens';
import { ICosts } from './types';

/**
 * The spend of all compute servers and the monthly budget, read from `GET costs`. Answers
 * that arrive after a newer request's are dropped; a failure keeps the last figures.
 */
export class CostsModel implements ICostsModel {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  get costs(): ICosts | null {
    return this._costs;
  }

  get error(): string | null {
    return this._error;
  }

  get changed(): ISignal<this, void> {
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

  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    try {
      const costs = await requestAPI<ICosts>('costs', {}, this.serverSettings);
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._costs = costs;
      this._error = null;
    } catch (error) {
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._error = error instanceof Error ? error.message : String(error);
    }
    this._changed.emit();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private _costs: ICosts | null = null;
  private _error: string | null = null;
  private _ticket = 0;
  private _watched = false;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
  private _watchedChanged = new Signal<this, boolean>(this);
}

/** The server events after which the totals are read again. */
const COST_EVENT_KINDS = new Set([
  'created',
  'updated',
  'deleted',
  'state',
  'cost_warning',
  'auto_stopped',
  'preempted'
]);

/** How soon after an event the costs are read (events come in bursts). */
const EVENT_DEBOUNCE_MS = 500;

/**
 * Keeps a costs model up to date while something shows it: reads the costs (debounced) after
 * the server events that change them, and polls, since spend grows by the second; the poll
 * stands by while nothing shows the costs or the page is hidden, and showing them again reads
 * them at once.
 */
export class CostsLiveUpdates {
  constructor(options: CostsLiveUpdates.IOptions) {
    this._model = options.model;
    this._events = options.events ?? null;
    this._debouncer = new Debouncer(
      () => this._model.refresh(),
      EVENT_DEBOUNCE_MS
    );
    this._poll = new Poll({
      auto: options.auto ?? true,
      factory: () => this._model.refresh(),
      frequency: this._frequency(options.interval),
      name: 'jupyter-compute-servers:costs',
      standby: () => !this._model.watched || 'when-hidden'
    });
    this._events?.stream.connect(this._onEvent, this);
    this._model.watchedChanged.connect(this._onWatchedChanged, this);
  }

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
    this._model.watchedChanged.disconnect(this._onWatchedChanged, this);
    this._debouncer.dispose();
    this._poll.dispose();
  }

  private _frequency(interval: number) {
    return { interval, backoff: true, max: Math.max(interval, 300 * 1000) };
  }

  private _onEvent(_: IServerEvents, event: IServerEvent): void {
    if (!COST_EVENT_KINDS.has(event.kind)) {
      return;
    }
    // Not shown now: showing them again reads them anyway.
    if (this._model.watched) {
      void this._debouncer.invoke();
    }
  }

  private _onWatchedChanged(_: unknown, watched: boolean): void {
    if (watched) {
      void this._model.refresh();
    }
  }

  private _model: ICostsModel;
  private _events: IServerEvents | null;
  private _debouncer: Debouncer;
  private _poll: Poll;
}

export namespace CostsLiveUpdates {
  export interface IOptions {
    model: ICostsModel;
    /** The Jupyter Server events to listen to; without, only the poll runs. */
    events?: IServerEvents | null;
    /** The poll's interval in milliseconds. */
    interval: number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}
