import * as React from 'react';

import { ISidebarSection } from '../tokens';
import { TeamModel } from './model';
import { TeamView } from './view';

/** Team mode's section, below the servers: quota and queue; the admin view for admins. */
export class TeamSidebarSection implements ISidebarSection {
  constructor(private readonly _team: TeamModel) {}

  readonly rank = 20;

  get changed(): TeamModel['changed'] {
    return this._team.changed;
  }

  setWatched(watched: boolean): void {
    this._team.watched = watched;
  }

  renderFooter(): React.ReactNode {
    const team = this._team;
    return (
      <TeamView
        team={team.team}
        queue={team.queue}
        servers={team.servers}
        spend={team.spend}
        month={team.month}
        spendCsvUrl={team.spendCsvUrl}
        audit={team.audit}
        auditCsvUrl={team.auditCsvUrl}
        hosts={team.hosts}
        loaded={team.loaded}
        error={team.error}
        onMoveToFront={entry => team.moveToFront(entry.server_id)}
        onCancel={entry => team.cancel(entry.server_id)}
        revocations={team.revocations}
        revocationsError={team.revocationsError}
        onRevoke={user => team.revoke(user)}
        onRestore={user => team.restore(user)}
      />
    );
  }
}
