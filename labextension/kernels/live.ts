import { ServerDetailsLiveUpdates } from '../servers/details';
import {
  IComputeServersModel,
  IServerEvents,
  IServerKernelsModel
} from '../tokens';

/**
 * Keeps a kernels model up to date for the running compute servers, while something shows
 * it (`kernels.watched`):
 * - re-reads a server's kernels (debounced) on its `kernels` events;
 * - reads them when a server becomes running, and forgets them when it stops running;
 * - polls, as a fallback for what no event says (a kernel that died on its own); the poll
 *   stands by while nothing shows the kernels or the page is hidden;
 * - catches up (re-reads every running server) when the kernels are shown again.
 * Nothing is read while the kernels are not shown.
 */
export class KernelsLiveUpdates extends ServerDetailsLiveUpdates {
  constructor(options: KernelsLiveUpdates.IOptions) {
    super({
      model: options.kernels,
      servers: options.servers,
      events: options.events,
      kind: 'kernels',
      interval: options.interval,
      auto: options.auto,
      name: 'jupyter-compute-servers:kernels'
    });
  }
}

export namespace KernelsLiveUpdates {
  export interface IOptions {
    kernels: IServerKernelsModel;
    /** The compute servers, for which of them are running. */
    servers: IComputeServersModel;
    /** The server extension's events; without, only the poll runs. */
    events?: IServerEvents | null;
    /** The fallback poll's interval in milliseconds. */
    interval: number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}
