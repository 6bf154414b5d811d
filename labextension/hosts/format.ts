import { formatBytes } from '../metrics/format';
import { formatNumber } from '../servers/format';
import { IHost, IHostGpu, IHostInventory } from './types';

/**
 * Where a host stands:
 * - `confirm-key`: a host key waits for the user to confirm its fingerprint;
 * - `unreachable`: no key is pinned, and the host could not be reached to fetch one;
 * - `error`: the key is pinned, but logging in or taking the inventory failed;
 * - `no-inventory`: the key is pinned, and there is no inventory yet;
 * - `ready`: servers can be created on it.
 */
export type HostStatus =
  'confirm-key' | 'unreachable' | 'error' | 'no-inventory' | 'ready';

export function hostStatus(host: IHost): HostStatus {
  if (host.pending_host_key_fingerprint) {
    return 'confirm-key';
  }
  if (!host.trusted) {
    return 'unreachable';
  }
  if (host.inventory_error) {
    return 'error';
  }
  return host.inventory ? 'ready' : 'no-inventory';
}

export const HOST_STATUS_LABELS: Readonly<Record<HostStatus, string>> = {
  'confirm-key': 'Confirm key',
  unreachable: 'Unreachable',
  error: 'Error',
  'no-inventory': 'No inventory',
  ready: 'Ready'
};

/** How the host is reached: "alice@lab.example.org:2222", the port left out when it is 22. */
export function hostAddress(host: IHost): string {
  const user = host.username ? `${host.username}@` : '';
  const port =
    host.port === 0
      ? ' (port from ~/.ssh/config)'
      : host.port && host.port !== 22
        ? `:${host.port}`
        : '';
  return `${user}${host.hostname}${port}`;
}

/** The inventory in a line: "8 CPUs · 31.2 GB RAM · 120 GB free · Linux x86_64 · Python 3.11.2". */
export function inventorySummary(inventory: IHostInventory): string {
  const parts: string[] = [];
  if (typeof inventory.cpu_count === 'number') {
    parts.push(
      `${inventory.cpu_count} CPU${inventory.cpu_count === 1 ? '' : 's'}`
    );
  }
  if (typeof inventory.memory_total === 'number') {
    parts.push(`${formatBytes(inventory.memory_total)} RAM`);
  }
  if (typeof inventory.disk_free === 'number') {
    parts.push(`${formatBytes(inventory.disk_free)} free disk`);
  }
  const system = [inventory.os, inventory.arch].filter(Boolean).join(' ');
  if (system) {
    parts.push(system);
  }
  if (inventory.python) {
    parts.push(`Python ${inventory.python}`);
  }
  return parts.join(' · ');
}

/** A GPU in a line: "NVIDIA A100-SXM4-80GB · 80 GB · driver 535.54.03 · CUDA 12.2 · MIG". */
export function gpuSummary(gpu: IHostGpu): string {
  const parts = [gpu.name];
  if (typeof gpu.memory_total === 'number') {
    parts.push(formatBytes(gpu.memory_total));
  }
  if (gpu.driver_version) {
    parts.push(`driver ${gpu.driver_version}`);
  }
  if (gpu.cuda_version) {
    parts.push(`CUDA ${gpu.cuda_version}`);
  }
  if (gpu.mig) {
    parts.push('MIG on');
  }
  return parts.join(' · ');
}

/**
 * The host's charge-back rates and GPU queue limit in a line, e.g. "1.5/h per server ·
 * NVIDIA A100: 2.5/h per GPU · waits up to 30 min for GPUs".
 */
export function ratesSummary(host: IHost): string {
  const parts: string[] = [];
  if (typeof host.hourly_rate === 'number') {
    parts.push(`${formatNumber(host.hourly_rate)}/h per server`);
  }
  for (const [type, rate] of Object.entries(host.gpu_rates ?? {})) {
    parts.push(`${type}: ${formatNumber(rate)}/h per GPU`);
  }
  if (typeof host.gpu_wait_minutes === 'number') {
    parts.push(
      host.gpu_wait_minutes > 0
        ? `waits up to ${formatNumber(host.gpu_wait_minutes)} min for GPUs`
        : 'never waits for GPUs'
    );
  }
  return parts.join(' · ');
}
