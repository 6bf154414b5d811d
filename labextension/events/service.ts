import { Event } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { IServerEvents } from '../tokens';
import { IServerEvent, ServerEventKind } from './types';

/** The `$id` of the server extension's event schema (event_schemas/server-v1.json). */
export const SERVER_EVENT_SCHEMA =
  'https://events.jupyter.org/jupyter_compute_servers/server/v1';

const KINDS: ReadonlySet<string> = new Set<ServerEventKind>([
  'created',
  'updated',
  'deleted',
  'state',
  'progress',
  'kernels',
  'kernelspecs',
  'terminals',
  'apps',
  'cost_warning',
  'auto_stopped',
  'sync',
  'preempted',
  'ending_soon',
  'hosts',
  'mount'
]);

const STRINGS = [
  'state_reason',
  'progress',
  'message',
  'trigger',
  'scope',
  'month'
] as const;
const NUMBERS = [
  'threshold',
  'spent',
  'limit',
  'period_days',
  'host_id'
] as const;

/**
 * The server extension's event in a Jupyter Server event (`{schema_id, ...data}`), or null
 * when it is another schema's or not one this frontend knows (a kind added later).
 */
export function parseServerEvent(
  emission: Event.Emission
): IServerEvent | null {
  if (
    emission.schema_id !== SERVER_EVENT_SCHEMA ||
    typeof emission.kind !== 'string' ||
    !KINDS.has(emission.kind)
  ) {
    return null;
  }
  const event: IServerEvent = {
    kind: emission.kind as ServerEventKind,
    server_id:
      typeof emission.server_id === 'number' ? emission.server_id : null
  };
  if (typeof emission.state === 'string' || emission.state === null) {
    event.state = emission.state;
  }
  for (const key of STRINGS) {
    const value = emission[key];
    if (typeof value === 'string') {
      event[key] = value;
    }
  }
  for (const key of NUMBERS) {
    const value = emission[key];
    if (typeof value === 'number') {
      event[key] = value;
    }
  }
  const sync = emission.sync as Record<string, unknown> | undefined;
  if (
    sync &&
    typeof sync === 'object' &&
    typeof sync.id === 'number' &&
    typeof sync.state === 'string'
  ) {
    event.sync = sync as unknown as IServerEvent['sync'];
  }
  return event;
}

/**
 * The one listener of the server extension's events on Jupyter Server's event stream: parses
 * each once and hands it on to every model (`stream`).
 */
export class ServerEvents implements IServerEvents {
  /** `manager`: Jupyter Server's events (`app.serviceManager.events`); none: no event. */
  constructor(manager: Event.IManager | null) {
    this._manager = manager;
    this._manager?.stream.connect(this._onEmission, this);
  }

  get stream(): ISignal<this, IServerEvent> {
    return this._stream;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._manager?.stream.disconnect(this._onEmission, this);
    Signal.clearData(this);
  }

  private _onEmission(_: Event.IManager, emission: Event.Emission): void {
    const event = parseServerEvent(emission);
    if (event) {
      this._stream.emit(event);
    }
  }

  private _manager: Event.IManager | null;
  private _stream = new Signal<this, IServerEvent>(this);
  private _isDisposed = false;
}
