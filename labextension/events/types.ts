/**
 * The server extension's Jupyter Server events, as the events service hands them on (see
 * jupyter_compute_servers/event_schemas/server-v1.json).
 */
import { ISyncEventData } from '../sync/types';

/** What happened (the schema's `kind`). */
export type ServerEventKind =
  | 'created'
  | 'updated'
  | 'deleted'
  | 'state'
  | 'progress'
  | 'kernels'
  | 'kernelspecs'
  | 'terminals'
  | 'apps'
  | 'cost_warning'
  | 'auto_stopped'
  | 'sync'
  | 'preempted'
  | 'ending_soon'
  | 'hosts'
  | 'mount';

/** One event of the server extension, parsed: fields of the wrong type are left out. */
export interface IServerEvent {
  kind: ServerEventKind;
  /** The server's id; null for what is about no one server (the budget, the hosts). */
  server_id: number | null;
  /** The server's state after the change (null once deleted). */
  state?: string | null;
  state_reason?: string;
  /** The latest progress message of a running operation. */
  progress?: string;
  /** cost_warning and auto_stopped: what to tell the user. */
  message?: string;
  /** auto_stopped: what stopped the server. */
  trigger?: string;
  /** cost_warning: a server's spend limit, or the monthly budget. */
  scope?: string;
  /** cost_warning: the fraction of the limit passed (1 when reached). */
  threshold?: number;
  spent?: number;
  limit?: number;
  period_days?: number;
  month?: string;
  /** sync: the sync's id, state and progress. */
  sync?: ISyncEventData;
  /** hosts: the host that changed. */
  host_id?: number;
}
