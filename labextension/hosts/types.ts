/**
 * The shapes of on-prem hosts (`compute-servers/api/hosts`), the machines of the `ssh` cloud,
 * and of what that cloud offers (`GET clouds`).
 */

/** One GPU of a host's inventory (NVML on the host). */
export interface IHostGpu {
  index: number;
  name: string;
  uuid: string;
  /** Bytes. */
  memory_total: number;
  driver_version?: string;
  cuda_version?: string;
  /** Whether MIG mode is on. */
  mig?: boolean;
}

/** What the agent found on a host. */
export interface IHostInventory {
  hostname?: string;
  os?: string;
  os_release?: string;
  arch?: string;
  python?: string;
  python_executable?: string;
  cpu_count?: number | null;
  /** Bytes. */
  memory_total?: number | null;
  /** Bytes free in the user's home directory. */
  disk_free?: number | null;
  gpus?: IHostGpu[];
  /** Why no GPU was found, when none was. */
  gpu_reason?: string;
}

/** What a host's registration holds: the body of `POST hosts` (and `PATCH hosts/{id}`). */
export interface IHostFields {
  name: string;
  /** A name or address, or a Host alias of ~/.ssh/config. */
  hostname: string;
  /** Default 22; 0: from ~/.ssh/config. */
  port?: number;
  /** Default: from ~/.ssh/config, else the local user. */
  username?: string;
  /** A private key file on the Jupyter machine; null: the ssh-agent and ~/.ssh keys. */
  identity_file?: string | null;
  use_agent?: boolean;
  /** The host's Python for the agent and kernels (default python3). */
  python?: string;
  /** Internal charge-back per hour of a slice. */
  hourly_rate?: number | null;
  /** Charge-back per GPU type per hour. */
  gpu_rates?: Record<string, number>;
  /** How long a start waits in the queue for GPUs. */
  gpu_wait_minutes?: number;
}

/** The body of `PATCH hosts/{id}`: fields to change, or the fingerprint being confirmed. */
export type IHostUpdate = Partial<IHostFields> & { trust_host_key?: string };

/** A registered host. */
export interface IHost {
  id: number;
  name: string;
  hostname: string;
  port: number;
  username: string;
  identity_file: string | null;
  use_agent: boolean;
  python: string;
  /** Whether its host key is pinned. */
  trusted: boolean;
  host_key_fingerprint: string | null;
  /** Where the pinned key came from, e.g. "~/.ssh/known_hosts". */
  host_key_source: string | null;
  /** A key seen on first contact, waiting for the user's confirmation. */
  pending_host_key_fingerprint: string | null;
  hourly_rate: number | null;
  gpu_rates: Record<string, number>;
  gpu_wait_minutes: number;
  inventory: IHostInventory | null;
  /** Why the last contact or inventory failed ('' when it did not). */
  inventory_error: string;
  /** When the inventory was taken, in seconds since the epoch. */
  inventoried: number | null;
  created: number;
  updated: number;
}

/** A GPU type on an ssh-cloud host, as `GET clouds` offers it. */
export interface IHostGpuOffering {
  type: string;
  count: number;
  free: number;
}

/** A host the ssh cloud offers (trusted and inventoried). */
export interface IHostOffering {
  id: number;
  name: string;
  cpu: number | null;
  memory_gb: number;
  gpus: IHostGpuOffering[];
}
