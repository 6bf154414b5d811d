/**
 * The compute servers' kernel specs as the page sees them (against a real `jupyter server` with
 * the extension, see jupyterServer.ts): what a spec says about its server, the badges, and
 * the kernel specs following the servers on their events.
 */
import { KernelSpec, KernelSpecManager } from '@jupyterlab/services';

import { launcherCardSvg } from '../kernels/icons';
import {
  KernelSpecsSync,
  safeColor,
  serverInitials,
  serverSpecs,
  specServer
} from '../kernels/specs';
import { JupyterServer, sleep } from './jupyterServer';
import { FakeEvents, until } from './testing';

jest.setTimeout(30000);

const api = new JupyterServer();

beforeAll(() => api.start(), 90000);
afterAll(() => api.stop(), 90000);
beforeEach(async () => {
  await sleep(30);
  await api.cleanup();
});

/** What Lab's kernel spec manager reads from the real server. */
async function readSpecs(): Promise<KernelSpec.ISpecModels> {
  const manager = new KernelSpecManager({ serverSettings: api.settings });
  await manager.ready;
  await manager.refreshSpecs();
  const specs = manager.specs!;
  manager.dispose();
  return specs;
}

describe('specServer', () => {
  it("reads a compute server spec's server from the real server's kernel specs", async () => {
    const server = await api.create('gpu-box');

    const specs = await readSpecs();
    const name = `compute-${server.id}-python3`;

    expect(specs.kernelspecs[name]!.display_name).toBe(
      'Python 3 (ipykernel) on gpu-box'
    );
    expect(specServer(specs.kernelspecs[name])).toEqual({
      id: server.id,
      name: 'gpu-box',
      color: server.color,
      cloud: 'local',
      kernel: 'python3',
      kernel_display_name: 'Python 3 (ipykernel)'
    });
    // The local kernel is no compute server's.
    expect(specServer(specs.kernelspecs['python3'])).toBeNull();
    expect(serverSpecs(specs).map(s => s.spec.name)).toEqual([name]);
  });

  it('refuses specs without a usable compute_server', () => {
    const spec = (metadata: any): KernelSpec.ISpecModel => ({
      name: 'x',
      display_name: 'X',
      language: 'python',
      argv: [],
      env: {},
      resources: {},
      metadata
    });
    expect(specServer(undefined)).toBeNull();
    expect(specServer(spec({}))).toBeNull();
    expect(specServer(spec({ compute_server: 'gpu' }))).toBeNull();
    expect(specServer(spec({ compute_server: { id: '1', name: 'a' } }))).toBe(
      null
    );
    // What is missing is filled in; a colour that is not #rrggbb is not used.
    expect(
      specServer(spec({ compute_server: { id: 2, name: 'a', color: 'red;x' } }))
    ).toEqual({
      id: 2,
      name: 'a',
      color: '#616161',
      cloud: '',
      kernel: '',
      kernel_display_name: 'X'
    });
  });
});

describe('badges', () => {
  it('uses the initials the server side uses', () => {
    expect(serverInitials('gpu-box')).toBe('GB');
    expect(serverInitials('my big gpu')).toBe('MB');
    expect(serverInitials('gpu')).toBe('gp');
    expect(serverInitials('--')).toBe('?');
  });

  it('keeps only #rrggbb colours', () => {
    expect(safeColor('#A1b2C3')).toBe('#A1b2C3');
    expect(safeColor('#fff')).toBe('#616161');
    expect(safeColor('url(x)')).toBe('#616161');
    expect(safeColor(undefined)).toBe('#616161');
  });

  it("draws a launcher card as JupyterLab's icon with the server's badge", () => {
    for (const kind of ['notebook', 'console'] as const) {
      const svg = launcherCardSvg(kind, { name: 'a<b', color: '#2ca02c' });
      const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
      expect(doc.querySelector('parsererror')).toBeNull();
      // JupyterLab's icon, nested, then the badge.
      const nested = doc.documentElement.querySelector('svg');
      expect(nested!.getAttribute('width')).toBe('40');
      const badge = doc.documentElement.querySelector(':scope > rect');
      expect(badge!.getAttribute('fill')).toBe('#2ca02c');
      expect(
        doc.documentElement.querySelector(':scope > text')!.textContent
      ).toBe('AB');
    }
  });
});

describe('KernelSpecsSync', () => {
  let specs: KernelSpecManager;
  let events: FakeEvents;
  let sync: KernelSpecsSync;

  beforeEach(async () => {
    specs = new KernelSpecManager({ serverSettings: api.settings });
    await specs.ready;
    // Let the manager's own first reads land (its poll then waits a minute).
    await sleep(100);
    events = new FakeEvents();
    sync = new KernelSpecsSync({
      specs,
      events: events.service,
      debounce: 50
    });
  });

  afterEach(() => {
    sync.dispose();
    events.dispose();
    specs.dispose();
  });

  function emit(kind: string, serverId: number): void {
    events.server(kind, serverId);
  }

  function names(): string[] {
    return Object.keys(specs.specs?.kernelspecs ?? {}).sort();
  }

  function specGets(): number {
    return api.requests.filter(r => r.path === '/api/kernelspecs').length;
  }

  it('follows a server created, renamed and deleted, once per burst of events', async () => {
    api.requests = [];
    const server = await api.create('first');
    const name = `compute-${server.id}-python3`;

    emit('created', server.id);
    emit('state', server.id);
    emit('created', server.id);
    await until(() => names().includes(name));
    await sleep(150);
    expect(specGets()).toBe(1);

    await api.call('PATCH', `servers/${server.id}`, { name: 'renamed' }, 200);
    emit('updated', server.id);
    await until(
      () =>
        specs.specs?.kernelspecs[name]?.display_name ===
        'Python 3 (ipykernel) on renamed'
    );

    await api.call('DELETE', `servers/${server.id}`, undefined, 204);
    emit('deleted', server.id);
    await until(() => !names().includes(name));
    expect(names()).toEqual(['python3']);
  });

  it('refreshes on kernelspecs events, and not on the others', async () => {
    api.requests = [];
    emit('state', 1);
    emit('progress', 1);
    emit('kernels', 1);
    events.other('https://example.org/other', { kind: 'created' });
    await sleep(200);
    expect(specGets()).toBe(0);

    emit('kernelspecs', 1);
    await until(() => specGets() === 1);
  });

  it('stops listening when disposed', async () => {
    api.requests = [];
    sync.dispose();
    emit('created', 1);
    await sleep(200);
    expect(sync.isDisposed).toBe(true);
    expect(specGets()).toBe(0);
  });
});
