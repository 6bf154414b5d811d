import { AllowedAction, IServerConfig, ServerState } from './types';

/** States in which an operation is under way: the badge shows a spinner. */
export const TRANSITIONAL_STATES: ReadonlySet<ServerState> =
  new Set<ServerState>([
    'starting',
    'stopping',
    'suspending',
    'deprovisioning'
  ]);

export function isTransitional(state: string): boolean {
  return TRANSITIONAL_STATES.has(state as ServerState);
}

/** The buttons' labels, in the order the row shows them. */
export const ACTION_LABELS: Readonly<Record<AllowedAction, string>> = {
  start: 'Start',
  resume: 'Resume',
  stop: 'Stop',
  suspend: 'Suspend',
  reboot: 'Reboot',
  deprovision: 'Deprovision',
  delete: 'Delete'
};

/** What each button does, as its tooltip. */
export const ACTION_CAPTIONS: Readonly<Record<AllowedAction, string>> = {
  start: 'Create or boot the machine',
  resume: 'Resume the suspended machine',
  stop: 'Shut the machine down; its disk is kept',
  suspend: 'Suspend the machine, keeping its memory',
  reboot: 'Restart the machine',
  deprovision: 'Delete the machine and its disk; the configuration is kept',
  delete: 'Forget this compute server'
};

/** The allowed actions in button order, unknown ones left out. */
export function orderedActions(
  allowed: ReadonlyArray<string>
): AllowedAction[] {
  return (Object.keys(ACTION_LABELS) as AllowedAction[]).filter(action =>
    allowed.includes(action)
  );
}

/** A number without trailing zeros: 4 -> "4", 0.25 -> "0.25", 1.333333 -> "1.33". */
export function formatNumber(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/**
 * The hardware of a configuration in a few words, e.g. "2 CPU · 4 GB · 10 GB disk · 1× T4",
 * naming only what the configuration sets.
 */
export function hardwareSummary(config: Partial<IServerConfig>): string {
  const parts: string[] = [];
  if (config.machine_type) {
    parts.push(config.machine_type);
  }
  if (typeof config.cpu === 'number') {
    parts.push(`${formatNumber(config.cpu)} CPU`);
  }
  if (typeof config.memory_gb === 'number') {
    parts.push(`${formatNumber(config.memory_gb)} GB`);
  }
  if (typeof config.disk_gb === 'number') {
    parts.push(`${formatNumber(config.disk_gb)} GB disk`);
  }
  if (config.gpu && config.gpu.count > 0) {
    parts.push(`${config.gpu.count}× ${config.gpu.type}`);
  }
  if (config.spot) {
    parts.push('spot');
  }
  return parts.join(' · ');
}

/** A state as the badge says it. */
export function stateLabel(state: string): string {
  return state.length > 0 ? state[0].toUpperCase() + state.slice(1) : state;
}
