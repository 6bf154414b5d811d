import { ServerDetailsLiveUpdates } from '../servers/details';
import { IComputeServersModel, IServerMetricsModel } from '../tokens';

/**
 * Samples the metrics of every running compute server every `interval` ms while something
 * shows them (`metrics.watched`) and the page is visible; the poll stands by otherwise, so a
 * hidden panel costs the servers nothing. A server that starts is sampled at once, one that
 * stops is forgotten, and showing the metrics again samples every running server at once.
 */
export class MetricsLiveUpdates extends ServerDetailsLiveUpdates {
  constructor(options: MetricsLiveUpdates.IOptions) {
    super({
      model: options.metrics,
      servers: options.servers,
      interval: options.interval,
      // A steady rhythm: a failed sample is kept per server and does not slow the others.
      backoff: false,
      auto: options.auto,
      name: 'jupyter-compute-servers:metrics'
    });
  }
}

export namespace MetricsLiveUpdates {
  export interface IOptions {
    metrics: IServerMetricsModel;
    /** The compute servers, for which of them are running. */
    servers: IComputeServersModel;
    /** How often to sample, in milliseconds. */
    interval: number;
    /** Start polling at once (default true). */
    auto?: boolean;
  }
}
