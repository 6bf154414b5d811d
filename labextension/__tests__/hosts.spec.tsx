/**
 * On-prem hosts (the ssh cloud): the hosts model against a real `jupyter server` with the ssh
 * cloud enabled and an OpenSSH sshd on 127.0.0.1 standing for a GPU host (sshHost.ts: two
 * stand-in A100s), from registration (key shown, confirmed only on request) to inventory, the
 * create form's host and GPU pickers, a server waiting in the host's GPU queue, and GPU
 * metrics; then the Hosts section and the host form on their own.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import * as React from 'react';
import { act } from 'react';

import {
  buildHostRequest,
  HostDialog,
  HostForm,
  HostFormBody,
  hostErrorKey,
  hostFormValues,
  parseGpuFractions,
  parseGpuRates
} from '../hosts/form';
import {
  gpuSummary,
  hostAddress,
  hostStatus,
  inventorySummary,
  ratesSummary
} from '../hosts/format';
import { CHECK_KEY_HINT, HostsSection } from '../hosts/list';
import { HostsModel } from '../hosts/model';
import { IHost } from '../hosts/types';
import { ServerMetricsView } from '../metrics/bars';
import { ServerMetricsModel } from '../metrics/model';
import { ApiError } from '../request';
import { MPS_LIMITS } from '../create/hardwarePicker';
import { CreateServerBody } from '../servers/createDialog';
import {
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  initialValues,
  valuesForCloud
} from '../servers/createForm';
import { ServerList } from '../servers/list';
import { ServersModel } from '../servers/model';
import { ICloud } from '../servers/types';
import { HostsSidebarSection } from '../hosts/section';
import { ComputeServersSidebar } from '../sidebar';
import { StatusModel } from '../status';
import { JupyterServer, sleep } from './jupyterServer';
import { A100, FakeGpuHost } from './sshHost';
import { mountReactPerTest, renderOutsideAct, until } from './testing';

jest.setTimeout(120000);

const describeWithSshd = FakeGpuHost.available ? describe : describe.skip;

describeWithSshd('hosts with a real server and an sshd host', () => {
  const api = new JupyterServer({ clouds: ['local', 'ssh'], home: true });
  const host = new FakeGpuHost();
  let model: HostsModel;
  let changes: number;

  beforeAll(async () => {
    await Promise.all([api.start(), host.start()]);
  }, 90000);
  afterAll(async () => {
    await api.stop();
    await host.stop();
  }, 90000);
  beforeEach(async () => {
    await api.cleanup();
    changes = 0;
    model = new HostsModel(api.settings, () => changes++);
  });
  afterEach(() => model.dispose());

  /** Register the sshd host and confirm its key, as a user would. */
  async function trustedHost(extra: Record<string, unknown> = {}) {
    const created = await model.create(host.body(extra) as any);
    return model.trust(created.id, created.pending_host_key_fingerprint!);
  }

  it('shows a new host key, and trusts it only when that fingerprint is confirmed', async () => {
    const created = await model.create(host.body() as any);

    expect(created.trusted).toBe(false);
    expect(created.pending_host_key_fingerprint).toMatch(/^SHA256:\S+$/);
    expect(hostStatus(created)).toBe('confirm-key');
    // Nothing logs in before the key is confirmed.
    expect(created.inventory).toBeNull();
    expect(model.hosts.map(h => h.id)).toEqual([created.id]);
    expect(changes).toBe(1);

    const refused = await model
      .trust(created.id, 'SHA256:not-the-one-shown')
      .catch(e => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused.status).toBe(400);
    expect(refused.field).toBe('trust_host_key');
    expect(refused.message).toContain(created.pending_host_key_fingerprint);
    await model.refresh();
    expect(model.host(created.id)!.trusted).toBe(false);

    const trusted = await model.trust(
      created.id,
      created.pending_host_key_fingerprint!
    );
    expect(trusted.trusted).toBe(true);
    expect(trusted.host_key_fingerprint).toBe(
      created.pending_host_key_fingerprint
    );
    expect(trusted.host_key_source).toBe('confirmed by the user');
    expect(trusted.pending_host_key_fingerprint).toBeNull();
    expect(hostStatus(trusted)).toBe('ready');
    const inventory = trusted.inventory!;
    expect(inventory.cpu_count).toBeGreaterThan(0);
    expect(inventory.memory_total).toBeGreaterThan(0);
    expect(inventory.python).toMatch(/^3\./);
    expect(inventory.gpus!.map(g => [g.name, g.driver_version])).toEqual([
      [A100, '550.54.15'],
      [A100, '550.54.15']
    ]);
    expect(gpuSummary(inventory.gpus![0])).toBe(
      `${A100} · 80 GB · driver 550.54.15 · CUDA 12.4`
    );
    expect(model.host(created.id)).toEqual(trusted);
  });

  it('reads the hosts when shown, unless the ssh cloud is off', async () => {
    let enabled = false;
    const shown = new HostsModel(api.settings, undefined, () => enabled);
    const reads = () =>
      api.requests.filter(r => r.method === 'GET' && r.path.endsWith('/hosts'))
        .length;
    shown.watched = true;
    await sleep(100);
    expect(reads()).toBe(0);
    expect(shown.loaded).toBe(false);

    shown.watched = false;
    enabled = true;
    shown.watched = true;
    await until(() => shown.loaded);
    expect(reads()).toBe(1);
    shown.dispose();
  });

  it('says when a host cannot be reached', async () => {
    const created = await model.create({
      name: 'gone',
      hostname: '127.0.0.1',
      // Nothing listens on port 1.
      port: 1
    });
    expect(created.trusted).toBe(false);
    expect(created.pending_host_key_fingerprint).toBeNull();
    expect(created.inventory_error).toMatch(/^Cannot reach 127\.0\.0\.1/);
    expect(hostStatus(created)).toBe('unreachable');
  });

  it('names the field the server refuses', async () => {
    const error = await model
      .create({ name: 'no spaces please', hostname: '127.0.0.1' })
      .catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(400);
    expect(error.field).toBe('name');
    expect(hostErrorKey(error.field)).toBe('name');
    expect(model.hosts).toEqual([]);
  });

  it('edits a host, takes its inventory again, and deletes it', async () => {
    const trusted = await trustedHost();
    const edited = await model.update(trusted.id, {
      hourly_rate: 1.5,
      gpu_rates: { [A100]: 2.5 },
      gpu_wait_minutes: 10
    });
    expect(ratesSummary(edited)).toBe(
      `1.5/h per server · ${A100}: 2.5/h per GPU · waits up to 10 min for GPUs`
    );
    // How it is reached did not change: the key stays pinned.
    expect(edited.trusted).toBe(true);

    await sleep(20);
    const again = await model.inventory(trusted.id);
    expect(again.inventoried!).toBeGreaterThan(trusted.inventoried!);

    await model.remove(trusted.id);
    expect(model.hosts).toEqual([]);
    expect((await api.call('GET', 'hosts')).body.hosts).toEqual([]);
  });

  it('offers the trusted host to the ssh cloud, with its GPUs', async () => {
    const servers = new ServersModel(api.settings);
    await servers.refreshClouds();
    const before = servers.clouds.find(c => c.name === 'ssh')!;
    expect(before.available).toBe(false);
    expect(before.reason).toContain('Register a host');

    const trusted = await trustedHost();
    await servers.refreshClouds();
    const ssh = servers.clouds.find(c => c.name === 'ssh')!;
    expect(ssh.available).toBe(true);
    expect(ssh.offerings.hosts).toEqual([
      {
        id: trusted.id,
        name: 'lab',
        arch: trusted.inventory!.arch,
        cpu: trusted.inventory!.cpu_count,
        memory_gb: expect.any(Number),
        // Whole GPUs (no MIG profile), no shares allowed by the admin.
        gpus: [
          { type: A100, count: 2, free: 2, mig_profile: null, fractions: [] }
        ]
      }
    ]);
    servers.dispose();
  });

  describe('servers on the host', () => {
    renderOutsideAct();

    /** Render an element in a widget attached to the page, once it has rendered. */
    async function show(element: React.ReactElement): Promise<ReactWidget> {
      const widget = ReactWidget.create(element);
      Widget.attach(widget, document.body);
      await until(() => widget.node.childElementCount > 0);
      return widget;
    }

    it('creates a server on the host from the form; another waits in line for GPUs, visibly', async () => {
      const trusted = await trustedHost();
      const servers = new ServersModel(api.settings);
      await servers.refreshClouds();
      await servers.refresh();

      // The create dialog's body, as a user fills it in: the ssh cloud, the host, 2 A100s.
      const body = new CreateServerBody(servers);
      const ssh = servers.clouds.find(c => c.name === 'ssh')!;
      body.values = {
        ...valuesForCloud(ssh, body.values),
        name: 'big',
        cpu: '1',
        memory_gb: '0.5',
        gpu_type: A100,
        gpu_count: '2'
      };
      expect(body.values.host).toBe(String(trusted.id));
      expect(await body.submit()).toBe(true);
      const big = body.created!;
      expect(big.cloud).toBe('ssh');
      expect(big.config.extra).toEqual({ host: trusted.id });
      expect(big.config.gpu).toEqual({ type: A100, count: 2 });
      body.dispose();

      await api.act(big.id, 'start');
      const small = (
        await api.call(
          'POST',
          'servers',
          {
            name: 'small',
            cloud: 'ssh',
            config: {
              cpu: 1,
              memory_gb: 0.5,
              gpu: { type: A100, count: 1 },
              extra: { host: trusted.id }
            }
          },
          201
        )
      ).body;
      await api.call('POST', `servers/${small.id}/actions/start`, {}, 202);

      // It waits, and says so.
      let waiting = '';
      const end = Date.now() + 20000;
      while (!waiting.startsWith('Waiting') && Date.now() < end) {
        await servers.refresh();
        waiting = servers.server(small.id)?.progress?.message ?? '';
        await sleep(100);
      }
      expect(waiting).toMatch(
        /^Waiting on lab: 1st in line \(.+\); estimated start .+$/
      );
      expect(servers.server(small.id)!.state).toBe('starting');

      const list = await show(
        <ServerList
          servers={servers.servers}
          loaded={true}
          onAction={() => undefined}
        />
      );
      const progress = list.node.querySelector(
        `[data-server-id="${small.id}"] .jp-ComputeServers-progress`
      )!;
      expect(progress.classList).toContain('jp-mod-waiting');
      expect(progress.textContent).toBe(waiting);
      list.dispose();

      // When the first stops, the second gets its GPU, and its metrics show it.
      await api.act(big.id, 'stop');
      const running = await api.settle(small.id, 30000);
      expect(running.state).toBe('running');
      const metrics = new ServerMetricsModel(api.settings);
      await metrics.refresh(small.id);
      const entry = metrics.entry(small.id);
      expect(entry.error).toBeNull();
      expect(entry.value!.gpus).toEqual([
        expect.objectContaining({
          name: A100,
          utilization: expect.any(Number),
          memory_total: 80 * 2 ** 30
        })
      ]);

      const view = await show(
        <ServerMetricsView serverName="small" entry={entry} wantsGpu={true} />
      );
      const gpu = entry.value!.gpus[0];
      const bars = Array.from(
        view.node.querySelectorAll<HTMLElement>('.jp-ComputeServers-metric')
      ).map(b => b.dataset.metric);
      expect(bars).toEqual([
        `gpu-${gpu.index}-util`,
        `gpu-${gpu.index}-memory`,
        'cpu',
        'memory'
      ]);
      view.dispose();
      metrics.dispose();
      servers.dispose();
    });
  });

  describe('the sidebar', () => {
    renderOutsideAct();

    it('has a Hosts section when the ssh cloud is enabled, and confirms a key from it', async () => {
      const servers = new ServersModel(api.settings);
      await servers.refreshClouds();
      const created = await model.create(host.body() as any);
      const sidebar = new ComputeServersSidebar({
        status: new StatusModel(api.settings),
        model: servers
      });
      sidebar.addSection(new HostsSidebarSection({ hosts: model }));
      Widget.attach(sidebar, document.body);
      const row = () =>
        sidebar.node.querySelector<HTMLElement>(
          `.jp-ComputeServers-host[data-host-id="${created.id}"]`
        );
      await until(() => row() !== null, 10000);
      expect(row()!.dataset.status).toBe('confirm-key');
      expect(
        row()!.querySelector('.jp-ComputeServers-fingerprint')!.textContent
      ).toBe(created.pending_host_key_fingerprint);

      row()!
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-hostTrust')!
        .click();
      await until(() => row()?.dataset.status === 'ready', 20000);
      expect(row()!.querySelectorAll('.jp-ComputeServers-gpu')).toHaveLength(2);
      sidebar.dispose();
      servers.dispose();
    });
  });
});

describe('hosts in the sidebar without the ssh cloud', () => {
  renderOutsideAct();

  it('has no Hosts section', async () => {
    const hosts = {
      hosts: [],
      loaded: true,
      error: null,
      changed: { connect: () => true, disconnect: () => true },
      watched: false
    } as any;
    const servers = {
      servers: [],
      clouds: [{ name: 'local', label: 'This machine' }],
      loaded: true,
      error: null,
      changed: { connect: () => true, disconnect: () => true }
    } as any;
    const status = {
      snapshot: {
        state: 'loading',
        frontendVersion: '0',
        status: null,
        error: null
      },
      changed: { connect: () => true, disconnect: () => true }
    } as any;
    const sidebar = new ComputeServersSidebar({ status, model: servers });
    sidebar.addSection(new HostsSidebarSection({ hosts }));
    Widget.attach(sidebar, document.body);
    await until(
      () => sidebar.node.querySelector('.jp-ComputeServers-servers') !== null
    );
    expect(sidebar.node.querySelector('.jp-ComputeServers-hosts')).toBeNull();
    sidebar.dispose();
  });
});

/** A host as the API answers, for rendering. */
function makeHost(overrides: Partial<IHost> = {}): IHost {
  return {
    id: 1,
    name: 'lab',
    hostname: 'lab.example.org',
    port: 22,
    username: 'alice',
    identity_file: null,
    use_agent: true,
    python: 'python3',
    trusted: true,
    host_key_fingerprint: 'SHA256:pinned',
    host_key_source: '~/.ssh/known_hosts',
    pending_host_key_fingerprint: null,
    hourly_rate: null,
    gpu_rates: {},
    gpu_fractions: {},
    gpu_wait_minutes: 30,
    inventory: {
      hostname: 'lab',
      os: 'Linux',
      arch: 'x86_64',
      python: '3.11.2',
      cpu_count: 8,
      memory_total: 32 * 2 ** 30,
      disk_free: 120 * 2 ** 30,
      gpus: [
        {
          index: 0,
          name: A100,
          uuid: 'GPU-1',
          memory_total: 80 * 2 ** 30,
          driver_version: '550.54.15',
          cuda_version: '12.4',
          mig: true
        }
      ],
      gpu_reason: ''
    },
    inventory_error: '',
    inventoried: 1700000000,
    created: 1700000000,
    updated: 1700000000,
    ...overrides
  };
}

describe('HostsSection', () => {
  const mount = mountReactPerTest();
  let calls: string[];

  beforeEach(() => {
    calls = [];
  });

  function render(
    hosts: IHost[],
    extra: { loaded?: boolean; error?: string } = {}
  ) {
    mount.render(
      <HostsSection
        hosts={hosts}
        loaded={extra.loaded ?? true}
        error={extra.error}
        onAdd={() => calls.push('add')}
        onRefresh={() => calls.push('refresh')}
        onEdit={h => calls.push(`edit ${h.name}`)}
        onTrust={async h => {
          calls.push(`trust ${h.pending_host_key_fingerprint}`);
        }}
        onInventory={async h => {
          calls.push(`inventory ${h.name}`);
        }}
        onDelete={async h => {
          calls.push(`delete ${h.name}`);
          throw new ApiError(409, 'Servers use this host.');
        }}
      />
    );
  }

  function row(name: string): HTMLElement {
    return mount.container.querySelector<HTMLElement>(
      `.jp-ComputeServers-host[data-host-name="${name}"]`
    )!;
  }

  it('shows a ready host: address, pinned key, inventory, GPUs and rates', () => {
    render([
      makeHost({
        port: 2222,
        hourly_rate: 0.5,
        gpu_rates: { [A100]: 2 }
      })
    ]);
    const lab = row('lab');
    expect(lab.dataset.status).toBe('ready');
    expect(
      lab.querySelector('.jp-ComputeServers-hostStatus')!.textContent
    ).toBe('Ready');
    expect(
      lab.querySelector('.jp-ComputeServers-hostAddress')!.textContent
    ).toBe('alice@lab.example.org:2222');
    expect(
      lab.querySelector('.jp-ComputeServers-hostKeyPinned')!.textContent
    ).toBe('Key SHA256:pinned (~/.ssh/known_hosts)');
    expect(
      lab.querySelector('.jp-ComputeServers-inventorySummary')!.textContent
    ).toBe(
      '8 CPUs · 32 GB RAM · 120 GB free disk · Linux x86_64 · Python 3.11.2'
    );
    expect(
      Array.from(lab.querySelectorAll('.jp-ComputeServers-gpu')).map(
        g => g.textContent
      )
    ).toEqual([
      `GPU 0: ${A100} · 80 GB · driver 550.54.15 · CUDA 12.4 · MIG on`
    ]);
    expect(lab.querySelector('.jp-ComputeServers-hostRates')!.textContent).toBe(
      `0.5/h per server · ${A100}: 2/h per GPU · waits up to 30 min for GPUs`
    );
    expect(lab.querySelector('.jp-ComputeServers-hostKey')).toBeNull();
    expect(lab.querySelector('[role="alert"]')).toBeNull();
  });

  it('asks to confirm a new key, showing its fingerprint plainly', async () => {
    render([
      makeHost({
        trusted: false,
        host_key_fingerprint: null,
        host_key_source: null,
        pending_host_key_fingerprint: 'SHA256:abcDEF123',
        inventory: null,
        inventory_error: 'Confirm the host key fingerprint to connect.'
      })
    ]);
    const lab = row('lab');
    expect(lab.dataset.status).toBe('confirm-key');
    const box = lab.querySelector('.jp-ComputeServers-hostKey')!;
    expect(box.textContent).toContain(
      "Confirm this is the host's key: SHA256:abcDEF123"
    );
    expect(box.textContent).toContain(CHECK_KEY_HINT);
    // The pending message is the box itself, not an error.
    expect(lab.querySelector('[role="alert"]')).toBeNull();
    expect(
      lab.querySelector<HTMLButtonElement>('[data-host-action="inventory"]')!
        .disabled
    ).toBe(true);

    await act(async () => {
      lab
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-hostTrust')!
        .click();
      await sleep(0);
    });
    expect(calls).toEqual(['trust SHA256:abcDEF123']);
  });

  it('says why a host cannot be used, and what to do', () => {
    render([
      makeHost({
        name: 'gone',
        trusted: false,
        host_key_fingerprint: null,
        inventory: null,
        inventory_error: 'Cannot reach 10.0.0.9: timed out'
      }),
      makeHost({
        id: 2,
        name: 'locked',
        inventory: null,
        inventory_error: 'Permission denied'
      }),
      makeHost({
        id: 3,
        name: 'cpu',
        inventory: {
          cpu_count: 1,
          gpus: [],
          gpu_reason: 'nvidia-ml-py is not installed on this machine'
        }
      })
    ]);
    expect(row('gone').dataset.status).toBe('unreachable');
    expect(row('gone').querySelector('[role="alert"]')!.textContent).toBe(
      'Cannot reach 10.0.0.9: timed out Check the address and port, then edit the host to try again.'
    );
    expect(row('locked').dataset.status).toBe('error');
    expect(
      row('locked').querySelector('[role="alert"]')!.textContent
    ).toContain('refresh the inventory');
    expect(
      row('cpu').querySelector('.jp-ComputeServers-noGpu')!.textContent
    ).toBe('No GPUs: nvidia-ml-py is not installed on this machine');
    expect(
      row('cpu').querySelector('.jp-ComputeServers-inventorySummary')!
        .textContent
    ).toBe('1 CPU');
  });

  it('calls back for add, refresh, edit and inventory, and shows a failed delete', async () => {
    render([makeHost()]);
    const click = (selector: string) =>
      act(() =>
        mount.container.querySelector<HTMLButtonElement>(selector)!.click()
      );
    click('.jp-ComputeServers-hostsAdd');
    click('.jp-ComputeServers-hostsRefresh');
    click('[data-host-action="edit"]');
    click('[data-host-action="inventory"]');
    await act(async () => {
      await sleep(0);
    });
    click('[data-host-action="delete"]');
    await act(async () => {
      await sleep(0);
    });
    expect(calls).toEqual([
      'add',
      'refresh',
      'edit lab',
      'inventory lab',
      'delete lab'
    ]);
    expect(row('lab').querySelector('[role="alert"]')!.textContent).toBe(
      'Servers use this host. The list has been read again.'
    );
  });

  it('says when there are none, while loading, and a failed read', () => {
    render([]);
    expect(mount.container.textContent).toContain('No hosts yet');
    render([], { loaded: false });
    expect(mount.container.textContent).toContain('Loading hosts');
    render([], { loaded: false, error: 'boom' });
    expect(mount.container.querySelector('[role="alert"]')!.textContent).toBe(
      'Could not read the hosts: boom'
    );
  });
});

describe('host formatting', () => {
  it('names how a host is reached', () => {
    expect(hostAddress(makeHost())).toBe('alice@lab.example.org');
    expect(hostAddress(makeHost({ username: '', port: 0 }))).toBe(
      'lab.example.org (port from ~/.ssh/config)'
    );
  });

  it('summarises an inventory with what it has', () => {
    expect(inventorySummary({})).toBe('');
    expect(inventorySummary({ memory_total: 512 * 2 ** 20, os: 'Linux' })).toBe(
      '512 MB RAM · Linux'
    );
  });

  it('says when a host never waits for GPUs', () => {
    expect(ratesSummary(makeHost({ gpu_wait_minutes: 0 }))).toBe(
      'never waits for GPUs'
    );
  });
});

describe('the host form', () => {
  const mount = mountReactPerTest();

  it('parses GPU rates, GPU types with spaces included', () => {
    expect(parseGpuRates('')).toEqual({ rates: {} });
    expect(parseGpuRates(`${A100} = 2.5\n\n Tesla T4=0.4 `)).toEqual({
      rates: { [A100]: 2.5, 'Tesla T4': 0.4 }
    });
    expect(parseGpuRates('T4 = cheap')).toEqual({
      error:
        'Line 1 ("T4 = cheap") is not GPU type = rate, e.g. NVIDIA A100-SXM4-80GB = 2.5.'
    });
    expect(parseGpuRates('A100\nT4 =')).toHaveProperty('error');
  });

  it('sends every field for a new host', () => {
    const values = {
      ...hostFormValues(),
      name: ' lab ',
      hostname: 'lab.example.org',
      port: '2222',
      gpu_rates: 'T4 = 0.4',
      hourly_rate: '1'
    };
    expect(buildHostRequest(values)).toEqual({
      body: {
        name: 'lab',
        hostname: 'lab.example.org',
        port: 2222,
        username: '',
        identity_file: null,
        use_agent: true,
        python: 'python3',
        hourly_rate: 1,
        gpu_rates: { T4: 0.4 },
        gpu_wait_minutes: 30,
        gpu_fractions: {}
      }
    });
  });

  it('parses and sends the GPU shares the admin allows', () => {
    expect(parseGpuFractions('')).toEqual({ fractions: {} });
    expect(parseGpuFractions(`${A100} = 0.25, 0.5\n GPU-a100-1=0.5`)).toEqual({
      fractions: { [A100]: [0.25, 0.5], 'GPU-a100-1': [0.5] }
    });
    expect(parseGpuFractions('T4 = half')).toEqual({
      error:
        'Line 1 ("T4 = half") is not GPU type or UUID = shares, e.g. NVIDIA A100-SXM4-80GB = 0.25, 0.5.'
    });
    expect(parseGpuFractions('T4 = 0.5,')).toHaveProperty('error');
    const host = makeHost({ gpu_fractions: { [A100]: [0.25, 0.5] } });
    const values = hostFormValues(host);
    expect(values.gpu_fractions).toBe(`${A100} = 0.25, 0.5`);
    expect(buildHostRequest(values, host)).toEqual({ body: {} });
    expect(
      buildHostRequest({ ...values, gpu_fractions: `${A100} = 0.5` }, host)
    ).toEqual({ body: { gpu_fractions: { [A100]: [0.5] } } });
    expect(buildHostRequest({ ...values, gpu_fractions: 'x' }, host)).toEqual({
      errors: { gpu_fractions: expect.stringContaining('Line 1') }
    });
    expect(hostErrorKey(`gpu_fractions.${A100}`)).toBe('gpu_fractions');
  });

  it('sends only what changed for an edited host', () => {
    const host = makeHost({ gpu_rates: { T4: 0.4 } });
    const values = hostFormValues(host);
    expect(values.gpu_rates).toBe('T4 = 0.4');
    expect(buildHostRequest(values, host)).toEqual({ body: {} });
    expect(
      buildHostRequest({ ...values, port: '2200', hourly_rate: '2' }, host)
    ).toEqual({ body: { port: 2200, hourly_rate: 2 } });
    expect(buildHostRequest({ ...values, gpu_rates: 'x' }, host)).toEqual({
      errors: { gpu_rates: expect.stringContaining('Line 1') }
    });
  });

  it('maps the fields of API errors to inputs', () => {
    expect(hostErrorKey('port')).toBe('port');
    expect(hostErrorKey('gpu_rates.T4')).toBe('gpu_rates');
    expect(hostErrorKey('trust_host_key')).toBe('general');
    expect(hostErrorKey(null)).toBe('general');
  });

  it('renders the inputs, and an error by its field', () => {
    mount.render(
      <HostForm
        values={hostFormValues()}
        errors={{ port: 'port must be an integer' }}
        onChange={() => undefined}
      />
    );
    const names = Array.from(
      mount.container.querySelectorAll<HTMLInputElement>('[name]')
    ).map(i => i.name);
    expect(names).toEqual([
      'name',
      'hostname',
      'port',
      'username',
      'identity_file',
      'use_agent',
      'python',
      'hourly_rate',
      'gpu_rates',
      'gpu_wait_minutes',
      'gpu_fractions'
    ]);
    expect(
      mount.container.querySelector(
        '[data-field="port"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toBe('port must be an integer');
  });
});

describe('the host dialog', () => {
  renderOutsideAct();

  it('keeps the dialog open with the refusal by its field', async () => {
    const refusing = {
      create: async () => {
        throw new ApiError(400, 'hostname is not valid.', 'hostname');
      }
    } as any;
    const body = new HostFormBody(refusing);
    body.values = { ...body.values, name: 'lab', hostname: 'bad host' };
    const dialog = new HostDialog(body);
    expect(await body.submit()).toBe(false);
    expect(body.errors).toEqual({ hostname: 'hostname is not valid.' });
    expect(body.values.hostname).toBe('bad host');
    dialog.dispose();
  });
});

/** The ssh cloud as `GET clouds` describes it, with one host of 2 A100s (1 free) and one without GPUs. */
const SSH_CLOUD: ICloud = {
  name: 'ssh',
  label: 'On-prem hosts (SSH)',
  description: 'Machines you already have.',
  supports_suspend: false,
  config_fields: ['cpu', 'memory_gb', 'gpu', 'disk_gb'],
  defaults: { cpu: 1, memory_gb: 1, gpu: null, disk_gb: 10 },
  available: true,
  reason: '',
  offerings: {
    hosts: [
      {
        id: 7,
        name: 'lab',
        cpu: 8,
        memory_gb: 31.2,
        gpus: [{ type: A100, count: 2, free: 1 }]
      },
      { id: 9, name: 'cpu-box', cpu: 4, memory_gb: 8, gpus: [] }
    ]
  }
};

describe('the create form on the ssh cloud', () => {
  const mount = mountReactPerTest();

  it('starts on the first host, and sends it as config.extra.host', () => {
    const values = initialValues([SSH_CLOUD]);
    expect(values.host).toBe('7');
    expect(
      buildCreateRequest(
        { ...values, name: 'x', gpu_type: A100, gpu_count: '2' },
        SSH_CLOUD
      ).config
    ).toEqual({
      cpu: 1,
      memory_gb: 1,
      disk_gb: 10,
      gpu: { type: A100, count: 2 },
      extra: { host: 7 }
    });
    expect(errorKeyFor('config.extra.host')).toBe('host');
  });

  it("offers the hosts, and only the chosen host's GPUs and sizes", () => {
    let values = {
      ...initialValues([SSH_CLOUD]),
      gpu_type: A100,
      gpu_count: '2'
    };
    const render = () =>
      mount.render(
        <CreateServerForm
          clouds={[SSH_CLOUD]}
          values={values}
          errors={{}}
          onChange={change => {
            values = change(values);
          }}
        />
      );
    render();
    const options = (name: string) =>
      Array.from(
        mount.container.querySelectorAll<HTMLOptionElement>(
          `select[name="${name}"] option`
        )
      ).map(o => o.textContent);
    expect(options('host')).toEqual([
      `lab (8 CPU · 31.2 GB · 2× ${A100}, 1 free)`,
      'cpu-box (4 CPU · 8 GB)'
    ]);
    expect(options('gpu_type')).toEqual(['None', `${A100} (1 of 2 free)`]);
    const label = (field: string) =>
      mount.container.querySelector(
        `[data-field="${field}"] .jp-ComputeServers-fieldLabel`
      )!.textContent;
    expect(label('cpu')).toBe('CPUs (1–8)');
    expect(label('memory_gb')).toBe('Memory, GB (0.25–31.2)');
    expect(label('gpu_count')).toBe('GPU count (1–2)');
    expect(
      mount.container.querySelector('[data-field="gpu_count"]')!.textContent
    ).toContain("Only 1 free now: the server waits in lab's queue");

    // Another host: its GPUs (none), and the chosen GPU is dropped.
    const select = mount.container.querySelector<HTMLSelectElement>(
      'select[name="host"]'
    )!;
    act(() => {
      select.value = '9';
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
    expect(values.host).toBe('9');
    expect(values.gpu_type).toBe('');
    render();
    expect(mount.container.querySelector('select[name="gpu_type"]')).toBeNull();
    expect(label('cpu')).toBe('CPUs (1–4)');
  });

  it('offers the shares of a GPU its admin allows, with what MPS does not give', () => {
    const mig = `${A100} MIG 1g.10gb`;
    const cloud: ICloud = {
      ...SSH_CLOUD,
      offerings: {
        hosts: [
          {
            id: 7,
            name: 'lab',
            cpu: 8,
            memory_gb: 31.2,
            gpus: [
              { type: A100, count: 2, free: 1, fractions: [0.25, 0.5] },
              {
                type: mig,
                count: 2,
                free: 2,
                mig_profile: '1g.10gb',
                fractions: []
              }
            ]
          }
        ]
      }
    };
    let values = { ...initialValues([cloud]), gpu_type: A100 };
    const render = () =>
      mount.render(
        <CreateServerForm
          clouds={[cloud]}
          values={values}
          errors={{}}
          onChange={change => {
            values = change(values);
            render();
          }}
        />
      );
    render();
    const field = (name: string) =>
      mount.container.querySelector(`[data-field="${name}"]`);
    const select = (name: string) =>
      mount.container.querySelector<HTMLSelectElement>(
        `select[name="${name}"]`
      )!;
    const choose = (name: string, value: string) =>
      act(() => {
        select(name).value = value;
        select(name).dispatchEvent(new Event('change', { bubbles: true }));
      });
    expect(
      Array.from(select('gpu_fraction').options).map(o => o.textContent)
    ).toEqual(['Whole GPU', '1/4 of the GPU (25%)', '1/2 of the GPU (50%)']);
    expect(field('gpu_count')).not.toBeNull();
    expect(field('gpu_fraction')!.textContent).not.toContain('MPS');

    choose('gpu_fraction', '0.25');
    expect(values.gpu_fraction).toBe('0.25');
    // One GPU's share: no count, and the limits said plainly.
    expect(field('gpu_count')).toBeNull();
    expect(field('gpu_fraction')!.textContent).toContain(MPS_LIMITS);
    expect(MPS_LIMITS).toContain(
      'one MPS server serves one Unix user at a time'
    );
    expect(MPS_LIMITS).toContain('a fatal GPU fault in one server');
    expect(
      buildCreateRequest({ ...values, name: 'x' }, cloud).config?.gpu
    ).toEqual({
      type: A100,
      count: 1,
      fraction: 0.25
    });
    expect(errorKeyFor('config.gpu.fraction')).toBe('gpu_fraction');

    // A MIG instance type offers no shares: the share is dropped with the type.
    choose('gpu_type', mig);
    expect(values).toMatchObject({ gpu_type: mig, gpu_fraction: '' });
    expect(select('gpu_fraction')).toBeNull();
    expect(
      buildCreateRequest({ ...values, name: 'x' }, cloud).config?.gpu
    ).toEqual({
      type: mig,
      count: 1
    });
  });
});
