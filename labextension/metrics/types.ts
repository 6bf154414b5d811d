/** The shape of `GET compute-servers/api/servers/{id}/metrics`: use sampled on the server now. */

export interface IGpuMetrics {
  index: number;
  uuid: string;
  name: string;
  /** Percent, or null when the GPU cannot say (MIG mode). */
  utilization: number | null;
  /** Bytes. */
  memory_used: number;
  /** Bytes. */
  memory_total: number;
  /** Celsius. */
  temperature: number | null;
  power_watts: number | null;
  power_limit_watts: number | null;
}

export interface IServerMetrics {
  /** When it was sampled, in seconds since the epoch. */
  time?: number;
  /** The GPUs this server may use. */
  gpus: IGpuMetrics[];
  /** Why there are no GPU figures, when there are none. */
  gpu_reason?: string;
  cpu_percent: number | null;
  cpu_count?: number;
  /** Bytes. */
  memory_total: number | null;
  /** Bytes. */
  memory_used: number | null;
}
