/**
 * What a row's buttons do: plain actions go straight to the API, deprovision and delete ask
 * first, and a failure shows the server's message (against a real `jupyter server` with the
 * extension, see jupyterServer.ts).
 */
import { ServerConnection } from '@jupyterlab/services';

import { ApiError } from '../request';
import { describeError, runServerAction } from '../servers/actions';
import { ServersModel } from '../servers/model';
import { JupyterServer, sleep, WARNING } from './jupyterServer';

jest.setTimeout(30000);

async function dialog(): Promise<HTMLElement> {
  const end = Date.now() + 3000;
  for (;;) {
    const node = document.querySelector<HTMLElement>('.jp-Dialog');
    // The header renders (with React) a moment after the dialog shows.
    if (node && node.querySelector('.jp-Dialog-header')?.textContent) {
      return node;
    }
    if (Date.now() > end) {
      throw new Error('no dialog');
    }
    await sleep(10);
  }
}

function click(node: HTMLElement, selector: string): void {
  node.querySelector<HTMLButtonElement>(selector)!.click();
}

describe('describeError', () => {
  it("gives the server's message", () => {
    expect(describeError(new ApiError(400, 'name is not valid.', 'name'))).toBe(
      'name is not valid.'
    );
  });

  it('says the list was refreshed after a conflict', () => {
    expect(
      describeError(new ApiError(409, 'Cannot stop: the server is off.'))
    ).toBe(
      'Cannot stop: the server is off. The list has been refreshed; try again if the action is still offered.'
    );
  });

  it('says what to do when the Jupyter server cannot be reached', () => {
    const message = describeError(
      new ServerConnection.NetworkError(new TypeError('fetch failed'))
    );
    expect(message).toContain('Cannot reach the Jupyter server');
    expect(message).toContain('Check that it is running');
  });
});

describe('runServerAction', () => {
  const api = new JupyterServer();
  let model: ServersModel;

  beforeAll(() => api.start(), 90000);
  afterAll(() => api.stop(), 90000);

  beforeEach(async () => {
    await sleep(30);
    await api.cleanup();
    model = new ServersModel(api.settings);
    await model.refreshClouds();
  });

  afterEach(async () => {
    // Close whatever a failed test left open: dialogs queue up.
    for (const node of Array.from(
      document.querySelectorAll<HTMLElement>('.jp-Dialog')
    )) {
      node.querySelector<HTMLButtonElement>('.jp-mod-reject')?.click();
    }
    await sleep(20);
    model.dispose();
  });

  it('starts a server without asking', async () => {
    const server = await api.create('box');
    await model.refresh();

    expect(await runServerAction(model, server, 'start')).toBe(true);

    expect(document.querySelector('.jp-Dialog')).toBeNull();
    expect(api.requests.filter(r => r.method === 'POST')).toEqual([
      {
        method: 'POST',
        path: `/compute-servers/api/servers/${server.id}/actions/start`,
        body: {}
      }
    ]);
    // The server took it: the start is in its history, and it comes up.
    expect(
      (await model.history(server.id)).map(h => [h.state, h.action])
    ).toContainEqual(['starting', 'start']);
    expect((await api.settle(server.id)).state).toBe('running');
  });

  it('deprovisions after a confirmation that says what is lost', async () => {
    const server = await api.create('box', 'off');
    await model.refresh();

    const done = runServerAction(model, server, 'deprovision');
    const node = await dialog();
    expect(node.textContent).toContain(`Deprovision ${server.name}?`);
    expect(node.textContent).toContain(WARNING);
    click(node, '.jp-ComputeServers-confirm');

    expect(await done).toBe(true);
    const post = api.requests.find(r => r.method === 'POST')!;
    expect(post.path).toBe(
      `/compute-servers/api/servers/${server.id}/actions/deprovision`
    );
    expect(post.body).toEqual({ confirm: true });
    expect((await api.settle(server.id)).state).toBe('deprovisioned');
  });

  it('sends nothing when a deprovision is cancelled', async () => {
    const server = await api.create('box', 'running');

    const done = runServerAction(model, server, 'deprovision');
    click(await dialog(), '.jp-mod-reject');

    expect(await done).toBe(false);
    expect(api.requests.filter(r => r.method === 'POST')).toHaveLength(0);
    expect((await api.get(server.id)).state).toBe('running');
  });

  it('deletes after a confirmation', async () => {
    const server = await api.create('box');
    await model.refresh();

    const done = runServerAction(model, server, 'delete');
    const node = await dialog();
    expect(node.textContent).toContain(`Delete ${server.name}?`);
    click(node, '.jp-ComputeServers-confirm');

    expect(await done).toBe(true);
    expect(await api.list()).toEqual([]);
    expect(model.servers).toHaveLength(0);
  });

  it("shows the server's message when an action fails", async () => {
    const server = await api.create('box', 'off');
    // The panel still offers stop: it has not seen the change yet.
    const stale = { ...server, state: 'running' as const };

    const done = runServerAction(model, stale, 'stop');
    const node = await dialog();
    expect(node.textContent).toContain(`Could not stop ${server.name}`);
    expect(node.textContent).toContain('Cannot stop: the server is off.');
    expect(node.textContent).toContain('Allowed now: start, deprovision.');
    click(node, '.jp-mod-reject');

    expect(await done).toBe(false);
    await sleep(50);
    expect(model.server(server.id)?.state).toBe('off');
  });
});
