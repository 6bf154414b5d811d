import * as React from 'react';

import { IServer, IServerMetricsModel, ISidebarSection } from '../tokens';
import { ServerMetricsView } from './bars';

/** The GPU, CPU and memory use of each running server, in the Compute Servers panel. */
export class MetricsSection implements ISidebarSection {
  constructor(private readonly _metrics: IServerMetricsModel) {}

  /** After the sync, before the kernels. */
  readonly rank = 20;

  get changed(): IServerMetricsModel['changed'] {
    return this._metrics.changed;
  }

  setWatched(watched: boolean): void {
    this._metrics.watched = watched;
  }

  renderDetails(server: IServer): React.ReactNode {
    return (
      <ServerMetricsView
        serverName={server.name}
        entry={this._metrics.entry(server.id)}
        wantsGpu={!!server.config.gpu && server.config.gpu.count > 0}
      />
    );
  }
}
