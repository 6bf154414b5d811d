/**
 * ServersModel and LiveUpdates against a real `jupyter server` with the compute servers
 * extension (see jupyterServer.ts); servers are really started and stopped on the local cloud.
 */
import { ApiError } from '../request';
import { LiveUpdates } from '../servers/live';
import { ServersModel } from '../servers/model';
import { JupyterServer, sleep, WARNING } from './jupyterServer';
import { FakeEvents, until } from './testing';

jest.setTimeout(30000);

const api = new JupyterServer();

beforeAll(() => api.start(), 90000);
afterAll(() => api.stop(), 90000);
beforeEach(async () => {
  // Let the refresh a previous test's change started in the background land first.
  await sleep(30);
  await api.cleanup();
});

describe('ServersModel', () => {
  let model: ServersModel;

  beforeEach(() => {
    model = new ServersModel(api.settings);
  });

  afterEach(() => model.dispose());

  it('starts empty and unloaded', () => {
    expect(model.servers).toEqual([]);
    expect(model.loaded).toBe(false);
    expect(model.error).toBeNull();
  });

  it('reads the servers, in id order, and says so with `changed`', async () => {
    await api.create('b');
    const a = await api.create('a');
    let emitted = 0;
    model.changed.connect(() => emitted++);

    await model.refresh();

    expect(model.loaded).toBe(true);
    expect(model.servers.map(s => s.name)).toEqual(['b', 'a']);
    expect(model.server(a.id)?.name).toBe('a');
    expect(emitted).toBe(1);
    expect(api.requests[0]).toMatchObject({
      method: 'GET',
      path: '/compute-servers/api/servers'
    });
  });

  it('reads the clouds and the deprovision warning', async () => {
    await model.refreshClouds();

    // The local cloud is the only one this package registers.
    expect(model.clouds.map(c => c.name)).toEqual(['local']);
    expect(model.clouds[0].available).toBe(true);
    expect(model.clouds[0].label).toBe('This machine');
    expect(model.clouds[0].offerings.cpu).toEqual({
      min: 1,
      max: expect.any(Number)
    });
    expect(model.deprovisionWarning).toBe(WARNING);
  });

  it('keeps the last list and reports the error when a refresh fails', async () => {
    await api.create('kept');
    await model.refresh();
    const broken = new ServersModel({
      ...api.settings,
      baseUrl: api.settings.baseUrl + 'nowhere/'
    });

    await broken.refresh();

    expect(broken.error).toBeTruthy();
    expect(broken.loaded).toBe(false);
    expect(model.servers).toHaveLength(1);
    broken.dispose();
  });

  it('creates a server and lists it at once', async () => {
    const server = await model.create({
      name: 'gpu-box',
      cloud: 'local',
      config: { cpu: 1 }
    });

    expect(server.name).toBe('gpu-box');
    expect(server.config.cpu).toBe(1);
    expect(model.servers.map(s => s.name)).toEqual(['gpu-box']);
    const post = api.requests.find(r => r.method === 'POST')!;
    expect(post.path).toBe('/compute-servers/api/servers');
    expect(post.body).toEqual({
      name: 'gpu-box',
      cloud: 'local',
      config: { cpu: 1 }
    });
  });

  it('passes a 400 on with the field at fault', async () => {
    const cpus = (await api.clouds())[0].offerings.cpu!.max;
    const error = await model
      .create({ name: 'x', config: { cpu: 64 } })
      .catch(e => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(400);
    expect(error.field).toBe('config.cpu');
    expect(error.message).toBe(
      `config.cpu is 64, but this machine has ${cpus} CPUs.`
    );
    expect(model.servers).toEqual([]);
  });

  it('passes a 409 on for a name already taken', async () => {
    await api.create('taken');
    await expect(model.create({ name: 'taken' })).rejects.toMatchObject({
      status: 409,
      field: 'name',
      message: "A compute server named 'taken' already exists."
    });
  });

  it('edits a server', async () => {
    const { id } = await api.create('old');
    await model.refresh();

    const server = await model.update(id, { name: 'new', notes: 'hi' });

    expect(server.name).toBe('new');
    expect(model.server(id)?.notes).toBe('hi');
    expect(api.requests.find(r => r.method === 'PATCH')).toMatchObject({
      path: `/compute-servers/api/servers/${id}`,
      body: { name: 'new', notes: 'hi' }
    });
  });

  it('runs an action and shows the transitional state at once', async () => {
    const { id } = await api.create('box');
    await model.refresh();

    const server = await model.act(id, 'start');

    expect(server.state).toBe('starting');
    expect(model.server(id)?.state).toBe('starting');
    // Only a stop, which gives up the start.
    expect(model.server(id)?.allowed_actions).toEqual(['stop']);
    expect(api.requests.find(r => r.method === 'POST')).toMatchObject({
      path: `/compute-servers/api/servers/${id}/actions/start`,
      body: {}
    });

    await api.settle(id);
    await model.refresh();
    expect(model.server(id)?.state).toBe('running');
    expect(model.server(id)?.allowed_actions).toEqual([
      'stop',
      'reboot',
      'deprovision'
    ]);
  });

  it('sends the confirmation body of a deprovision', async () => {
    const { id } = await api.create('box', 'off');
    await expect(model.act(id, 'deprovision')).rejects.toMatchObject({
      status: 400,
      field: 'confirm',
      message: `Deprovisioning needs "confirm": true. ${WARNING}`
    });
    expect((await api.get(id)).state).toBe('off');

    const server = await model.act(id, 'deprovision', { confirm: true });

    expect(server.state).toBe('deprovisioning');
    expect((await api.settle(id)).state).toBe('deprovisioned');
  });

  it('passes a 409 on for an action the state does not allow', async () => {
    const { id } = await api.create('box', 'off');
    const error = await model.act(id, 'stop').catch(e => e);

    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(409);
    expect(error.message).toContain('Cannot stop: the server is off.');
    expect(error.body.allowed_actions).toEqual(['start', 'deprovision']);
  });

  it('deletes a deprovisioned server', async () => {
    const { id } = await api.create('gone');
    await api.create('stays');
    await model.refresh();

    await model.remove(id);

    expect(model.servers.map(s => s.name)).toEqual(['stays']);
    expect((await api.list()).map(s => s.name)).toEqual(['stays']);
    expect((await api.call('GET', `servers/${id}`)).status).toBe(404);
  });

  it('refuses to delete a server that is not deprovisioned', async () => {
    const { id } = await api.create('box', 'running');
    await model.refresh();

    await expect(model.remove(id)).rejects.toMatchObject({
      status: 409,
      message: expect.stringContaining('Deprovision it first.')
    });
    expect(model.server(id)).toBeDefined();
    expect((await api.get(id)).state).toBe('running');
  });

  it('reads the history', async () => {
    const { id, created } = await api.create('box');
    expect(await model.history(id)).toEqual([
      {
        at: created,
        state: 'deprovisioned',
        reason: 'created',
        action: null
      }
    ]);
  });

  it('lists a server another process created on the next refresh', async () => {
    await model.refresh();
    expect(model.servers).toHaveLength(0);
    await api.create('from-cli');

    await model.refresh();

    expect(model.servers.map(s => s.name)).toEqual(['from-cli']);
  });
});

describe('LiveUpdates', () => {
  let model: ServersModel;
  let events: FakeEvents;
  let live: LiveUpdates;

  beforeEach(() => {
    model = new ServersModel(api.settings);
    events = new FakeEvents();
  });

  afterEach(() => {
    live?.dispose();
    events.dispose();
    model.dispose();
  });

  function gets(): number {
    return api.requests.filter(
      r => r.method === 'GET' && r.path.endsWith('/servers')
    ).length;
  }

  it('re-reads the list, once, after a burst of server events', async () => {
    live = new LiveUpdates({
      model,
      events: events.service,
      interval: 60 * 1000,
      auto: false
    });
    const { id } = await api.create('new');

    for (let i = 0; i < 5; i++) {
      events.server('state', id, { state: 'starting' });
    }
    await until(() => model.loaded);
    await sleep(300);

    expect(model.servers.map(s => s.name)).toEqual(['new']);
    expect(gets()).toBe(1);
  });

  it('ignores the events of other schemas', async () => {
    live = new LiveUpdates({
      model,
      events: events.service,
      interval: 60 * 1000,
      auto: false
    });

    events.other(
      'https://events.jupyter.org/jupyter_server/contents_service/v1'
    );
    await sleep(400);

    expect(gets()).toBe(0);
  });

  it('polls the list as a fallback', async () => {
    live = new LiveUpdates({
      model,
      events: null,
      interval: 100,
      standby: 'never'
    });
    await until(() => model.loaded);
    await api.create('by-poll');

    await until(() => model.servers.length === 1);

    expect(model.servers[0].name).toBe('by-poll');
  });

  it('polls faster while an operation is under way', async () => {
    live = new LiveUpdates({
      model,
      events: null,
      interval: 60 * 1000,
      auto: false
    });
    expect(live.poll.frequency.interval).toBe(60 * 1000);
    const { id } = await api.create('box');
    await model.refresh();
    await model.act(id, 'start');

    expect(live.poll.frequency.interval).toBe(2000);

    await api.settle(id);
    await model.refresh();
    expect(live.poll.frequency.interval).toBe(60 * 1000);

    live.interval = 10 * 1000;
    expect(live.poll.frequency.interval).toBe(10 * 1000);
  });

  it('stops listening when disposed', async () => {
    live = new LiveUpdates({
      model,
      events: events.service,
      interval: 60 * 1000,
      auto: false
    });
    live.dispose();

    events.server('created', 1, { state: 'deprovisioned' });
    await sleep(300);

    expect(live.isDisposed).toBe(true);
    expect(gets()).toBe(0);
  });
});
