import * as React from 'react';

import { ICostsModel, IComputeServersModel, ISidebarSection } from '../tokens';
import { CostsTotal } from './view';

/** The spend of all servers and the monthly budget, above the list of servers. */
export class CostsSection implements ISidebarSection {
  constructor(private readonly _costs: ICostsModel) {}

  readonly rank = 10;

  get changed(): ICostsModel['changed'] {
    return this._costs.changed;
  }

  setWatched(watched: boolean): void {
    this._costs.watched = watched;
  }

  renderHeader(servers: IComputeServersModel): React.ReactNode {
    const costs = this._costs;
    if (servers.servers.length === 0 && !costs.costs?.budget) {
      return null;
    }
    return <CostsTotal costs={costs.costs} error={costs.error} />;
  }
}
