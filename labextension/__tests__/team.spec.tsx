/**
 * Team mode in the panel: the Team section's wording (queue positions, estimates, the per-user
 * cap), its buttons (an admin's move to front and cancel, a user's cancel of their own), and
 * the admin view (everyone's servers by owner, spend per user with its CSV, the shared hosts
 * with who holds which slice, the audit log with its CSV, the users' access: revoke after a
 * confirmation, restore); then the team model against two
 * real `jupyter server`s in team mode on one store, as an admin (root) and a second owner
 * (alice) whose server, slice of a shared host and audit lines the admin sees.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import * as React from 'react';
import { act } from 'react';

import { IHost } from '../hosts/types';
import { ApiError } from '../request';
import { ServersModel } from '../servers/model';
import { ITeam } from '../servers/types';
import { revokedBy, revokedNotice, revokeWarning } from '../team/access';
import { TeamModel } from '../team/model';
import { IAuditEntry, IQueueEntry, ISpendRow } from '../team/types';
import {
  auditText,
  auditWhat,
  byOwner,
  capText,
  estimateText,
  hostGpusText,
  ITeamViewProps,
  positionText,
  sliceText,
  TeamView
} from '../team/view';
import { JupyterServer, sleep } from './jupyterServer';
import { makeServer, mountReactPerTest, typeInto } from './testing';

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

const A100 = 'NVIDIA A100-SXM4-80GB';

function makeHost(overrides: Partial<IHost> = {}): IHost {
  return {
    id: 1,
    name: 'lab-gpu',
    hostname: 'gpu1.example.org',
    port: 22,
    username: '',
    identity_file: null,
    use_agent: false,
    python: 'python3',
    trusted: true,
    host_key_fingerprint: 'SHA256:pinned',
    host_key_source: 'confirmed',
    pending_host_key_fingerprint: null,
    hourly_rate: null,
    gpu_rates: {},
    gpu_fractions: {},
    gpu_wait_minutes: 30,
    inventory: {
      hostname: 'gpu1',
      os: 'Linux',
      arch: 'x86_64',
      python: '3.11.2',
      cpu_count: 32,
      memory_total: 256 * 2 ** 30,
      disk_free: 2 ** 40,
      gpus: [
        { index: 0, name: A100, uuid: 'GPU-0', memory_total: 80 * 2 ** 30 },
        { index: 1, name: A100, uuid: 'GPU-1', memory_total: 80 * 2 ** 30 },
        {
          index: 2,
          name: 'NVIDIA T4',
          uuid: 'GPU-2',
          memory_total: 16 * 2 ** 30
        }
      ],
      gpu_reason: ''
    },
    inventory_error: '',
    inventoried: 1700000000,
    created: 1700000000,
    updated: 1700000000,
    slices: [
      {
        server_id: 3,
        server_name: 'gpu-box',
        owner: 'alice',
        unix_user: 'alice',
        cpu: 4,
        memory_gb: 16,
        gpu_uuids: ['GPU-0'],
        gpu_fraction: null,
        allocated: 1700000100
      },
      {
        server_id: 4,
        server_name: 'gpu-box',
        owner: 'bob',
        unix_user: 'jh-bob',
        cpu: 1,
        memory_gb: 2,
        gpu_uuids: ['GPU-2'],
        gpu_fraction: 0.5,
        allocated: 1700000200
      }
    ],
    ...overrides
  };
}

const AUDIT: IAuditEntry[] = [
  {
    at: Date.UTC(2026, 11, 6, 9, 30) / 1000,
    actor: 'root',
    owner: 'bob',
    server_id: 4,
    server_name: 'gpu-box',
    action: 'queue_move',
    detail: 'to 1'
  },
  {
    at: Date.UTC(2026, 11, 6, 9, 0) / 1000,
    actor: 'alice',
    owner: 'alice',
    server_id: 3,
    server_name: 'gpu-box',
    action: 'create',
    detail: ''
  }
];

/** The dialog that shows (its header renders a moment after it does). */
async function dialog(): Promise<HTMLElement> {
  const end = Date.now() + 3000;
  for (;;) {
    const node = document.querySelector<HTMLElement>('.jp-Dialog');
    if (node && node.querySelector('.jp-Dialog-header')?.textContent) {
      return node;
    }
    if (Date.now() > end) {
      throw new Error('no dialog');
    }
    await act(() => sleep(10));
  }
}

const NO_CONTROL_PLANE =
  "Revoking access needs team mode's control plane (the Hub's compute-control service).";

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
      audit: [],
      auditCsvUrl: '/compute-servers/api/audit?format=csv',
      hosts: [],
      loaded: true,
      error: null,
      onMoveToFront: jest.fn(() => Promise.resolve()),
      onCancel: jest.fn(() => Promise.resolve()),
      revocations: null,
      revocationsError: NO_CONTROL_PLANE,
      onRevoke: jest.fn(() => Promise.reject(new Error('not expected'))),
      onRestore: jest.fn(() => Promise.resolve()),
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
    expect(section.textContent).not.toContain('Shared hosts');
    expect(section.textContent).not.toContain('Audit log');
    expect(section.querySelector('.jp-ComputeServers-audit-csv')).toBe(null);
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

  it('words hosts, slices and audit lines', () => {
    const host = makeHost();
    expect(hostGpusText(host)).toBe(`2x ${A100}, 1x NVIDIA T4`);
    expect(hostGpusText(makeHost({ inventory: null }))).toBe(
      'not inventoried yet'
    );
    expect(
      hostGpusText(
        makeHost({ inventory: null, inventory_error: 'Permission denied' })
      )
    ).toBe('not inventoried: Permission denied');
    const [whole, share] = host.slices!;
    expect(sliceText(whole, host)).toBe(
      `gpu-box of alice: 4 CPUs, 16 GB, ${A100}`
    );
    expect(sliceText(share, host)).toBe(
      'gpu-box of bob (as jh-bob): 1 CPU, 2 GB, 0.5 of NVIDIA T4'
    );
    expect(auditWhat(AUDIT[0])).toBe('queue_move (to 1)');
    expect(auditWhat(AUDIT[1])).toBe('create');
    expect(auditText({ ...AUDIT[1], server_id: null, owner: '' })).toBe(
      'alice: create, gpu-box of no owner'
    );
  });

  it('shows an admin the shared hosts, who holds which slice, and the audit log with its CSV', () => {
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          hosts: [
            makeHost(),
            makeHost({
              id: 2,
              name: 'spare',
              hostname: '10.0.0.9',
              port: 2222,
              trusted: false,
              inventory: null,
              slices: []
            })
          ],
          audit: AUDIT
        })}
      />
    );
    const section = mount.container.querySelector('.jp-ComputeServers-team')!;
    const hosts = section.querySelectorAll(
      '.jp-ComputeServers-team-hosts > li'
    );
    expect(
      [...hosts].map(
        li => li.querySelector('.jp-ComputeServers-team-host')!.textContent
      )
    ).toEqual([
      `lab-gpu (gpu1.example.org): 2x ${A100}, 1x NVIDIA T4`,
      'spare (10.0.0.9:2222): not inventoried yet; its key is not confirmed yet'
    ]);
    // Two users' servers named alike are told apart by their owners.
    expect(
      [...hosts[0].querySelectorAll('.jp-ComputeServers-team-slices li')].map(
        li => [li.getAttribute('data-server-id'), li.textContent]
      )
    ).toEqual([
      ['3', `gpu-box of alice: 4 CPUs, 16 GB, ${A100}`],
      ['4', 'gpu-box of bob (as jh-bob): 1 CPU, 2 GB, 0.5 of NVIDIA T4']
    ]);
    expect(hosts[1].textContent).toContain('No slice is held.');
    // The audit log, newest first: who did what to which server, and whose it is.
    const lines = section.querySelectorAll('.jp-ComputeServers-audit-entry');
    expect(
      [...lines].map(li => [
        li.getAttribute('data-server-id'),
        li.querySelector('.jp-ComputeServers-audit-line')!.textContent,
        li.querySelector('time')!.getAttribute('dateTime')
      ])
    ).toEqual([
      [
        '4',
        'root: queue_move (to 1), gpu-box (4) of bob',
        '2026-12-06T09:30:00.000Z'
      ],
      ['3', 'alice: create, gpu-box (3) of alice', '2026-12-06T09:00:00.000Z']
    ]);
    expect(
      section
        .querySelector('.jp-ComputeServers-audit-csv')!
        .getAttribute('href')
    ).toBe('/compute-servers/api/audit?format=csv');
  });

  it('says an admin has no host and no audit line yet', () => {
    mount.render(<TeamView {...props({ team: makeTeam(true) })} />);
    const text = mount.container.textContent;
    expect(text).toContain('No host is registered.');
    expect(text).toContain('Nothing recorded yet.');
  });

  it("revokes a user's access from their row after a confirmation, and restores", async () => {
    const at = Date.UTC(2026, 11, 6, 9, 30) / 1000;
    const onRevoke = jest.fn((user: string) =>
      Promise.resolve({
        user,
        revoked_by: 'root',
        revoked_at: at,
        database_sessions_ended: 1,
        openstack_tokens_revoked: 0
      })
    );
    const onRestore = jest.fn(() => Promise.resolve());
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          servers: [
            makeServer({ id: 1, name: 'alice-box', owner: 'alice' }),
            makeServer({ id: 2, name: 'bob-box', owner: 'bob' }),
            makeServer({ id: 3, name: 'root-box', owner: 'root' })
          ],
          revocations: [{ user: 'alice', revoked_by: 'root', revoked_at: at }],
          revocationsError: null,
          onRevoke,
          onRestore
        })}
      />
    );
    const section = mount.container.querySelector('.jp-ComputeServers-team')!;
    const row = (owner: string) =>
      section.querySelector(
        `.jp-ComputeServers-team-owners li[data-owner="${owner}"]`
      )!;
    // Revoke on the rows of those not revoked, never the admin's own; alice is marked.
    expect(row('bob').querySelector('.jp-ComputeServers-revoke')).not.toBe(
      null
    );
    expect(row('root').querySelector('.jp-ComputeServers-revoke')).toBe(null);
    expect(row('alice').querySelector('.jp-ComputeServers-revoke')).toBe(null);
    expect(row('alice').textContent).toContain('(access revoked)');
    // The Access part: who revoked alice, when, with Restore.
    const revoked = section.querySelector(
      '.jp-ComputeServers-revocations li[data-user="alice"]'
    )!;
    expect(revoked.textContent).toContain(
      `alice: revoked by root, ${new Date(at * 1000).toLocaleString()}`
    );

    // Cancelled: nothing is asked of the server.
    await click(row('bob').querySelector('.jp-ComputeServers-revoke'));
    let node = await dialog();
    expect(node.textContent).toContain("Revoke bob's access?");
    expect(node.textContent).toContain(revokeWarning('bob'));
    expect(node.textContent).toContain('Their compute servers keep running');
    await click(node.querySelector('.jp-mod-reject'));
    expect(onRevoke).not.toHaveBeenCalled();

    // Confirmed: revoked, and what it ended is said.
    await click(row('bob').querySelector('.jp-ComputeServers-revoke'));
    node = await dialog();
    await click(node.querySelector('.jp-ComputeServers-confirm'));
    await act(() => sleep(0));
    expect(onRevoke).toHaveBeenCalledWith('bob');
    expect(section.querySelector('[role="status"]')!.textContent).toBe(
      "bob's access is revoked: 1 database session ended. Their servers keep running."
    );

    await click(revoked.querySelector('.jp-ComputeServers-restore'));
    expect(onRestore).toHaveBeenCalledWith('alice');
    expect(section.querySelector('[role="status"]')!.textContent).toBe(
      "alice's access is restored: they may get new credentials."
    );
  });

  it('revokes by name, says why a revoke failed, and why access cannot be read', async () => {
    const onRevoke = jest.fn(() =>
      Promise.reject(
        new Error("The control plane refused revoking carol's access (502).")
      )
    );
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          revocations: [],
          revocationsError: null,
          onRevoke
        })}
      />
    );
    const section = mount.container.querySelector('.jp-ComputeServers-team')!;
    expect(section.textContent).toContain("No user's access is revoked.");
    const form = section.querySelector('.jp-ComputeServers-revoke-form')!;
    const input = form.querySelector('input')!;
    const submit = form.querySelector<HTMLButtonElement>('button')!;
    expect(submit.disabled).toBe(true);
    // The admin may not revoke themselves: the button stays off.
    await act(async () => typeInto(input, 'root'));
    expect(submit.disabled).toBe(true);
    await act(async () => typeInto(input, ' carol '));
    expect(submit.disabled).toBe(false);
    await click(submit);
    await click((await dialog()).querySelector('.jp-ComputeServers-confirm'));
    await act(() => sleep(0));
    expect(onRevoke).toHaveBeenCalledWith('carol');
    expect(section.querySelector('[role="alert"]')!.textContent).toBe(
      "Could not revoke carol's access: The control plane refused revoking carol's access (502)."
    );

    // No control plane: the Access part says so, and no row offers Revoke.
    mount.render(
      <TeamView
        {...props({
          team: makeTeam(true),
          servers: [makeServer({ id: 2, name: 'bob-box', owner: 'bob' })]
        })}
      />
    );
    expect(mount.container.querySelector('.jp-ComputeServers-revoke')).toBe(
      null
    );
    expect(
      mount.container.querySelector('.jp-ComputeServers-access [role="alert"]')!
        .textContent
    ).toBe(`Could not read whose access is revoked: ${NO_CONTROL_PLANE}`);
  });

  it('words a revocation', () => {
    const at = Date.UTC(2026, 11, 6, 9, 30) / 1000;
    expect(revokedBy({ user: 'bob', revoked_by: 'root', revoked_at: at })).toBe(
      `revoked by root, ${new Date(at * 1000).toLocaleString()}`
    );
    expect(
      revokedNotice({
        user: 'bob',
        revoked_by: 'root',
        revoked_at: at,
        database_sessions_ended: 2,
        openstack_tokens_revoked: 1
      })
    ).toBe(
      "bob's access is revoked: 2 database sessions ended, 1 OpenStack token revoked. Their servers keep running."
    );
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

/** Register a shared host on the store and give a server a slice of it with a GPU, as the
 * ssh cloud's start does (no SSH host needed to see who holds what). */
const GIVE_SLICE = `
import sys, time
from jupyter_compute_servers.db import Database
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.models import GpuSpec
database = Database(sys.argv[1])
hosts = HostStore(database, clock=time.time)
gpu = {"index": 0, "uuid": "GPU-0", "name": "${A100}", "memory_total": 2**36}
host = hosts.create(name="lab-gpu", hostname="127.0.0.1", port=22, username="",
                    inventory={"cpu_count": 8, "memory_total": 2**35, "gpus": [gpu]})
hosts.allocate(int(sys.argv[2]), host, 2, 4.0, GpuSpec("${A100}", 1))
database.close()
`;

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
    const [aliceBox] = model.servers;
    execFileSync(
      path.join(__dirname, '..', '..', '.venv', 'bin', 'python'),
      [
        '-c',
        GIVE_SLICE,
        `sqlite:///${path.join(admin.dataDir, 'servers.db')}`,
        String(aliceBox.id)
      ],
      { stdio: 'pipe' }
    );
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
    // The shared host, with who holds its slice; the audit log's line of Alice's create.
    expect(model.hosts.map(h => [h.name, hostGpusText(h)])).toEqual([
      ['lab-gpu', `1x ${A100}`]
    ]);
    expect(
      model.hosts[0].slices!.map(s => sliceText(s, model.hosts[0]))
    ).toEqual([`alice-box of alice: 2 CPUs, 4 GB, ${A100}`]);
    // (the actor is whoever Alice's Jupyter says asked: an anonymous user there)
    expect(model.audit.map(e => [e.action, e.server_name, e.owner])).toEqual([
      ['create', 'alice-box', 'alice']
    ]);
    expect(model.auditCsvUrl).toBe(
      `${admin.settings.baseUrl}compute-servers/api/audit?format=csv`
    );
    const auditCsv = await fetch(model.auditCsvUrl, {
      headers: { Authorization: `token ${admin.settings.token}` }
    });
    expect(auditCsv.headers.get('Content-Type')).toMatch(/^text\/csv/);
    const lines = (await auditCsv.text()).trim().split('\r\n');
    expect(lines[0]).toBe('at,actor,owner,server_id,server_name,action,detail');
    expect(lines[1]).toMatch(
      new RegExp(`^[\\d.]+,[^,]+,alice,${aliceBox.id},alice-box,create,local$`)
    );
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
    // These servers have no control plane: the revocations say why, the rest still shows,
    // and a revoke is refused saying what is needed.
    expect(model.revocations).toBe(null);
    expect(model.revocationsError).toContain("needs team mode's control plane");
    const revoke = model.revoke('alice');
    await expect(revoke).rejects.toBeInstanceOf(ApiError);
    await expect(revoke).rejects.toMatchObject({
      status: 409,
      field: 'control_plane_url'
    });
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
      expect(own.audit).toEqual([]);
      expect(own.hosts).toEqual([]);
    } finally {
      own.dispose();
    }
  });
});
