import { KernelSpec } from '@jupyterlab/services';
import { Debouncer } from '@lumino/polling';

import { IServerEvent, IServerEvents } from '../tokens';
import { ISpecServer } from './types';

/** Kernel specs of compute servers are named `compute-<server id>-<kernel>`. */
export const SPEC_PREFIX = 'compute-';

/** The server event kinds after which the kernel specs may have changed. */
export const SPEC_EVENT_KINDS: ReadonlySet<string> = new Set([
  'created',
  'updated',
  'deleted',
  'kernelspecs'
]);

/** A colour the badge may use: `#rrggbb`, else a neutral grey. */
export function safeColor(color: unknown): string {
  return typeof color === 'string' && /^#[0-9a-fA-F]{6}$/.test(color)
    ? color
    : '#616161';
}

/**
 * The compute server a kernel spec runs on (its `metadata.compute_server`), or null for any
 * other kernel spec.
 */
export function specServer(
  spec: KernelSpec.ISpecModel | null | undefined
): ISpecServer | null {
  const info = (spec?.metadata as Record<string, any> | undefined)
    ?.compute_server;
  if (
    !info ||
    typeof info !== 'object' ||
    typeof info.id !== 'number' ||
    typeof info.name !== 'string'
  ) {
    return null;
  }
  return {
    id: info.id,
    name: info.name,
    color: safeColor(info.color),
    cloud: typeof info.cloud === 'string' ? info.cloud : '',
    kernel: typeof info.kernel === 'string' ? info.kernel : '',
    kernel_display_name:
      typeof info.kernel_display_name === 'string' && info.kernel_display_name
        ? info.kernel_display_name
        : spec!.display_name
  };
}

/** The kernel specs of compute servers, in display name order. */
export function serverSpecs(
  specs: KernelSpec.ISpecModels | null | undefined
): { spec: KernelSpec.ISpecModel; server: ISpecServer }[] {
  const found: { spec: KernelSpec.ISpecModel; server: ISpecServer }[] = [];
  for (const spec of Object.values(specs?.kernelspecs ?? {})) {
    const server = spec ? specServer(spec) : null;
    if (spec && server) {
      found.push({ spec, server });
    }
  }
  return found.sort((a, b) =>
    a.spec.display_name.localeCompare(b.spec.display_name)
  );
}

/**
 * A server's initials, as its kernel specs' logos show them: the first letters of its first
 * two words ("gpu-box" -> "GB"), or the first two characters of a one-word name.
 */
export function serverInitials(name: string): string {
  const words = name.match(/[A-Za-z0-9]+/g) ?? ['?'];
  return words.length > 1
    ? words
        .slice(0, 2)
        .map(w => w[0])
        .join('')
        .toUpperCase()
    : words[0].slice(0, 2);
}

/**
 * Keeps the page's kernel specs in step with the compute servers: re-reads them (debounced)
 * after the server events that change them (a server created, renamed, recoloured or deleted,
 * or its kernels discovered), so that the launcher and the kernel picker update at once.
 */
export class KernelSpecsSync {
  constructor(options: KernelSpecsSync.IOptions) {
    this._specs = options.specs;
    this._events = options.events;
    this._debouncer = new Debouncer(
      () => this._specs.refreshSpecs(),
      options.debounce ?? 200
    );
    this._events.stream.connect(this._onEvent, this);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events.stream.disconnect(this._onEvent, this);
    this._debouncer.dispose();
  }

  private _onEvent(_: IServerEvents, event: IServerEvent): void {
    if (SPEC_EVENT_KINDS.has(event.kind)) {
      void this._debouncer.invoke().catch(reason => {
        console.warn('Could not refresh the kernel specs.', reason);
      });
    }
  }

  private _specs: KernelSpec.IManager;
  private _events: IServerEvents;
  private _debouncer: Debouncer;
  private _isDisposed = false;
}

export namespace KernelSpecsSync {
  export interface IOptions {
    /** The page's kernel specs (`app.serviceManager.kernelspecs`). */
    specs: KernelSpec.IManager;
    /** The server extension's events. */
    events: IServerEvents;
    /** How long to wait for more events before refreshing, in ms (default 200). */
    debounce?: number;
  }
}
