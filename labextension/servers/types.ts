/**
 * The shapes of the compute servers REST API (`compute-servers/api/servers`, `.../clouds`),
 * as the server extension writes them.
 */
import { IAutoStop, IServerCost } from '../costs/types';
import { IHostOffering } from '../hosts/types';
import { ISyncSettings } from '../sync/types';

/** Every state a server can be in. */
export type ServerState =
  | 'deprovisioned'
  | 'starting'
  | 'running'
  | 'stopping'
  | 'off'
  | 'suspending'
  | 'suspended'
  | 'deprovisioning'
  | 'error';

/** The lifecycle actions (`POST servers/{id}/actions/{action}`). */
export type ServerAction =
  'start' | 'stop' | 'suspend' | 'resume' | 'reboot' | 'deprovision';

/** What `allowed_actions` may list: the actions and `delete`. */
export type AllowedAction = ServerAction | 'delete';

export interface IGpuSpec {
  type: string;
  count: number;
}

/** A server's configuration; fields its cloud does not use are null. */
export interface IServerConfig {
  image: string | null;
  image_tag: string | null;
  machine_type: string | null;
  cpu: number | null;
  memory_gb: number | null;
  gpu: IGpuSpec | null;
  disk_gb: number | null;
  disk_type: string | null;
  spot: boolean | null;
  region: string | null;
  zone: string | null;
  extra: Record<string, unknown>;
}

export interface ISpendLimit {
  amount: number;
  period_days: number;
}

/** Stop the server every day at this time (24-hour HH:MM) in `timezone` (null: the costs one). */
export interface IDailyStop {
  time: string;
  timezone: string | null;
}

export interface IProgress {
  message: string;
  fraction: number | null;
  at: number;
}

/** One compute server, as `GET servers/{id}` answers. */
export interface IServer {
  id: number;
  name: string;
  color: string;
  notes: string;
  cloud: string;
  state: ServerState;
  state_reason: string;
  config: IServerConfig;
  idle_timeout_minutes: number | null;
  spend_limit: ISpendLimit | null;
  daily_stop?: IDailyStop | null;
  created: number;
  updated: number;
  operation: string | null;
  progress: IProgress | null;
  allowed_actions: AllowedAction[];
  /** What it costs per hour in each state, and what it has cost (null: not worked out). */
  cost?: IServerCost | null;
  /** When it will stop by itself, while it runs. */
  auto_stop?: IAutoStop | null;
  /** How it syncs files with the Jupyter root. */
  sync?: ISyncSettings;
}

export interface IRange {
  min: number;
  max: number;
}

export interface IImageOffering {
  id: string;
  label: string;
  tags: string[];
}

/** What a cloud offers; empty when the cloud is not available. */
export interface IOfferings {
  images?: IImageOffering[];
  cpu?: IRange;
  memory_gb?: IRange;
  gpus?: { type: string; max_count: number }[];
  disk_gb?: IRange;
  /** The ssh cloud's hosts (trusted and inventoried), with their GPUs and how many are free. */
  hosts?: IHostOffering[];
}

/** One enabled cloud, as `GET clouds` answers. */
export interface ICloud {
  name: string;
  label: string;
  description: string;
  supports_suspend: boolean;
  config_fields: string[];
  defaults: Partial<IServerConfig>;
  available: boolean;
  reason: string;
  offerings: IOfferings;
}

/** The body of `POST servers`; `PATCH servers/{id}` takes the same fields but `cloud`. */
export interface IServerCreate {
  name: string;
  cloud?: string;
  color?: string;
  notes?: string;
  config?: Partial<IServerConfig>;
  idle_timeout_minutes?: number | null;
  spend_limit?: ISpendLimit | null;
  daily_stop?: IDailyStop | null;
  /** The fields given replace the current ones. */
  sync?: Partial<ISyncSettings>;
}

export type IServerUpdate = Partial<Omit<IServerCreate, 'cloud'>>;

/** The schema of the server extension's Jupyter Server events. */
export const SERVER_EVENT_SCHEMA =
  'https://events.jupyter.org/jupyter_compute_servers/server/v1';

/** One state change, from `GET servers/{id}/history`. */
export interface IHistoryEntry {
  at: number;
  state: ServerState;
  reason: string;
  action: string | null;
}
