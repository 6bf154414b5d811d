/**
 * Team mode in the panel: the Team section's wording (queue positions, estimates, the per-user
 * cap), its buttons (an admin's move to front and cancel, a user's cancel of their own), and
 * the admin view (everyone's servers by owner, spend per user with its CSV); then the team
 * model against two real `jupyter server`s in team mode on one store, as an admin (root) and a
 * second owner (alice) whose server the admin sees.
 */
import * as path from 'path';
import * as React from 'react';
import { act } from 'react';

import { ApiError } from '../request';
import { ServersModel } from '../servers/model';
import { ITeam } from '../servers/types';
import { TeamModel } from '../team/model';
import { IQueueEntry, ISpendRow } from '../team/types';
import {
  byOwner,
  capText,
  estimateText,
  ITeamViewProps,
  positionText,
  TeamView
} from '../team/view';
import { JupyterServer } from './jupyterServer';
import { makeServer, mountReactPerTest } from './testing';

jest.setTimeout(120000);

const NO_LIMITS = {
  running_servers: null,
  gpus: null,
  gpus_per_host: null,
  cpu: null,
  memory_gb: null,
  monthly_spend: null
};

function makeTeam(admin: boolean, overrides: Partial<ITeam> = {}): ITeam {
  const name = admin ? 'root' : 'alice';
  return {
    team_mode: true,
    user: { name, groups: [], admin },
    owner: name,
    month: '2026-12',
    quota: { ...NO_LIMITS, monthly_spend: 50 },
    used: {
      running_servers: 0,
      gpus: 0,
      cpu: 0,
      memory_gb: 0,
      monthly_spend: 12
    },
    left: { ...NO_LIMITS, monthly_spend: 38 },
    ...overrides
  };
}

function makeEntry(overrides: Partial<IQueueEntry> = {}): IQueueEntry {
  return {
    server_id: 7,
    host_id: 1,
    host_name: 'lab-gpu',
    owner: 'alice',
    server_name: 'alice-train',
    requested: 1700000000,
    position: 2,
    queue_length: 3,
    gpus: 1,
    held: 0,
    cap: 1,
    over_cap: false,
    cancelled_by: null,
    estimated_start: {
      at: null,
      basis:
        "unknown: the servers holding this host's GPUs have no known end (no daily stop)"
    },
    ...overrides
  };
}

const SPEND: ISpendRow[] = [
  {
    month: '2026-12',
    kind: 'user',
    name: 'alice',
    currency: 'USD',
    spent: 12.5,
    servers: 2,
    deleted_servers: 1,
    unknown: ''
  },
  {
    month: '2026-12',
    kind: 'group',
    name: 'course',
    currency: 'USD',
    spent: 12.5,
    servers: 2,
    deleted_servers: 1,
    unknown: ''
  }
];

/** Click a button, and let the state changes it makes settle (inside act()). */
async function click(button: Element | null): Promise<void> {
  expect(button).not.toBe(null);
  await act(async () => {
    (button as HTMLButtonElement).click();
  });
}

describe('the Team section', () => {
  const mount = mountReactPerTest();

  function props(overrides: Partial<ITeamViewProps> = {}): ITeamViewProps {
    return {
      team: makeTeam(false),
      queue: [],
      servers: [],
      spend: [],
      month: '2026-12',
      spendCsvUrl: '/compute-servers/api/audit/spend?format=csv&month=2026-12',
      loaded: true,
      error: null,
      onMoveToFront: jest.fn(() => Promise.resolve()),
      onCancel: jest.fn(() => Promise.resolve()),
      ...overrides
    };
  }

  it('words positions, estimates and the per-user cap', () => {
    expect(positionText(makeEntry())).toBe('2nd of 3 on lab-gpu');
    expect(positionText(makeEntry({ position: 11, queue_length: 12 }))).toBe(
      '11th of 12 on lab-gpu'
    );
    expect(estimateText(makeEntry())).toBe(
      "Estimated start: unknown: the servers holding this host's GPUs have no known end (no daily stop)."
    );
    const now = Date.UTC(2026, 11, 6, 9, 0);
    const known = makeEntry({
      estimated_start: {
        at: now / 1000 + 45 * 60,
        basis:
          "the daily stops of the servers holding this host's GPUs (2 of 2 known)"
      }
    });
    expect(estimateText(known, now)).toMatch(
      /^Estimated start: about .+ \(in 45 min\), from the daily stops of the servers holding this host's GPUs \(2 of 2 known\)\.$/
    );
    expect(capText(makeEntry())).toBe(null);
    expect(capText(makeEntry({ over_cap: true, held: 1 }))).toBe(
      "alice holds 1 of this host's GPUs, the most one user may hold at once (1): the next " +
        "user's request is served first."
    );
    expect(
      byOwner([
        makeServer({ id: 1, name: 'b1', owner: 'bob' }),
        makeServer({ id: 2, name: 'a1', owner: 'alice' }),
        makeServer({ id: 3, name: 'b2', owner: 'bob' })
      ]).map(([owner, servers]) => [owner, servers.map(s => s.name)])
    ).toEqual([
      ['alice', ['a1']],
      ['bob', ['b1', 'b2']]
    ]);
  });

  it('shows a user their quota and own place in line, which they may cancel but not move', async () => {
    const onCancel = jest.fn(() => Promise.resolve());
    const entry = makeEntry({ over_cap: true, held: 1 });
    mount.render(<TeamView {...props({ queue: [entry], onCancel })} />);
    const section = mount.container.querySelector('.jp-ComputeServers-team')!;
    expect(section.querySelector('h3')!.textContent).toBe('Team');
    expect(
      section.querySelector('.jp-ComputeServers-team-quota')!.textContent
    ).toBe('$38.00 of $50.00 left this month.');
    expect(
      section.querySelector('.jp-ComputeServers-queue-position')!.textContent
    ).toBe('2nd of 3 on lab-gpu');
    expect(section.querySelector('.jp-ComputeServers-queue-cap')).not.toBe(
      null
    );
    expect(section.querySelector('.jp-ComputeServers-queue-front')).toBe(null);
    expect(section.querySelector('.jp-ComputeServers-spend-csv')).toBe(null);
    expect(section.textContent).not.toContain('Servers by user');
    await click(section.querySelector('.jp-ComputeServers-queue-cancel'));
    expect(onCancel).toHaveBeenCalledWith(entry);
  });

  it('shows an admin every queue, servers by owner and spend, with its CSV', async () => {
    const onMoveToFront = jest.fn(() => Promise.resolve());
    const first = makeEntry({
      server_id: 5,
      position: 1,
      owner: 'bob',
      server_name: 'bob-x'
    });
    const second = makeEntry();
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          queue: [first, second],
          servers: [
            makeServer({
              id: 1,
              name: 'alice-box',
              owner: 'alice',
              state: 'running'
            }),
            makeServer({ id: 2, name: 'root-box', owner: 'root' })
          ],
          spend: SPEND,
          onMoveToFront
        })}
      />
    );
    const section = mount.container.querySelector('.jp-ComputeServers-team')!;
    expect(section.querySelector('h3')!.textContent).toBe('Team (admin)');
    const entries = section.querySelectorAll('.jp-ComputeServers-queue-entry');
    expect(
      [...entries].map(e => e.querySelector('strong')!.textContent)
    ).toEqual(['bob-x', 'alice-train']);
    expect(
      entries[1].querySelector('.jp-ComputeServers-owner')!.textContent
    ).toBe(' (alice)');
    // The first in line cannot move further forward; the second can.
    expect(entries[0].querySelector('.jp-ComputeServers-queue-front')).toBe(
      null
    );
    await click(entries[1].querySelector('.jp-ComputeServers-queue-front'));
    expect(onMoveToFront).toHaveBeenCalledWith(second);
    const owners = section.querySelectorAll(
      '.jp-ComputeServers-team-owners li'
    );
    expect([...owners].map(li => li.textContent)).toEqual([
      'alice: alice-box (running)',
      'root: root-box (deprovisioned)'
    ]);
    const row = section.querySelector('tr[data-user="alice"]')!;
    expect([...row.querySelectorAll('td')].map(td => td.textContent)).toEqual([
      'alice',
      '$12.50',
      '2 (1 deleted)'
    ]);
    expect(
      section.querySelector('.jp-ComputeServers-spend-groups')!.textContent
    ).toBe('By group: course $12.50');
    expect(
      section
        .querySelector('.jp-ComputeServers-spend-csv')!
        .getAttribute('href')
    ).toBe('/compute-servers/api/audit/spend?format=csv&month=2026-12');
  });

  it('says why a move failed, and shows nothing standalone', async () => {
    const refused = new Error('Compute server 7 is not in a queue.');
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          queue: [makeEntry()],
          onMoveToFront: () => Promise.reject(refused)
        })}
      />
    );
    await click(
      mount.container.querySelector('.jp-ComputeServers-queue-front')
    );
    expect(mount.container.querySelector('[role="alert"]')!.textContent).toBe(
      'Could not move alice-train: Compute server 7 is not in a queue.'
    );
    mount.render(
      <TeamView {...props({ team: makeTeam(false, { team_mode: false }) })} />
    );
    expect(mount.container.innerHTML).toBe('');
  });
});

describe('the team model with two real team-mode servers on one store', () => {
  const fixtures = path.join(__dirname, 'fixtures');
  const team = {
    team_mode: true,
    team_admin_users: ['root'],
    quotas: { '*': { monthly_spend: 25, gpus_per_host: 1 } }
  };
  // The admin's Jupyter: every request with its token is root's (named_identity.py).
  const admin = new JupyterServer({
    config: {
      ServerApp: {
        identity_provider_class: 'named_identity.NamedIdentityProvider'
      },
      ComputeServersApp: { ...team, user: 'root' }
    },
    env: { PYTHONPATH: fixtures }
  });
  let alice: JupyterServer;
  let model: TeamModel;

  beforeAll(async () => {
    await admin.start();
    // Alice's Jupyter, on the admin's store, as a second owner.
    alice = new JupyterServer({
      dataDir: admin.dataDir,
      config: { ComputeServersApp: { ...team, user: 'alice' } }
    });
    await alice.start();
    model = new TeamModel(admin.settings);
  }, 120000);
  afterAll(async () => {
    model.dispose();
    await alice.stop();
    await admin.stop();
  }, 60000);

  it("reads the admin's view, with another owner's server and the CSV", async () => {
    const servers = new ServersModel(alice.settings);
    await servers.create({ name: 'alice-box' });
    servers.dispose();
    await model.refresh();
    expect(model.error).toBe(null);
    expect(model.isAdmin).toBe(true);
    expect(model.team!.user.name).toBe('root');
    expect(model.team!.quota.monthly_spend).toBe(25);
    expect(model.team!.quota.gpus_per_host).toBe(1);
    expect(model.month).toMatch(/^\d{4}-\d{2}$/);
    expect(model.queue).toEqual([]);
    expect(model.servers.map(s => [s.name, s.owner])).toEqual([
      ['alice-box', 'alice']
    ]);
    expect(model.spendCsvUrl).toBe(
      `${admin.settings.baseUrl}compute-servers/api/audit/spend?format=csv&month=${model.month}`
    );
    const csv = await fetch(model.spendCsvUrl, {
      headers: { Authorization: `token ${admin.settings.token}` }
    });
    expect(csv.headers.get('Content-Type')).toMatch(/^text\/csv/);
    expect((await csv.text()).split('\r\n')[0]).toBe(
      'month,kind,name,currency,spent,servers,deleted_servers,unknown'
    );
    // A cancel of an entry that is not there says so (and the model reads again).
    const failed = model.cancel(4242);
    await expect(failed).rejects.toBeInstanceOf(ApiError);
    await expect(failed).rejects.toThrow(
      'Compute server 4242 is not in a queue.'
    );
  });

  it('shows a non-admin only their own', async () => {
    const own = new TeamModel(alice.settings);
    try {
      await own.refresh();
      expect(own.isAdmin).toBe(false);
      expect(own.team!.owner).toBe('alice');
      expect(own.servers).toEqual([]);
      expect(own.spend).toEqual([]);
    } finally {
      own.dispose();
    }
  });
});
