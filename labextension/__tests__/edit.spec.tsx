/**
 * The edit dialog: the form's values for a server, the `PATCH` it sends (only what changed),
 * the editing rules shown before the server enforces them, and, against a real `jupyter
 * server`: limits saved and shown in the row, a change refused with 409 shown by its field,
 * the form following the server's state, and the live estimate of an edit.
 */
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import { ImageCatalogState } from '../create/catalogState';
import { EditServerBody, EditServerDialog } from '../servers/editDialog';
import {
  buildUpdateRequest,
  editErrorKeyFor,
  editFormValues,
  editLocks,
  EditServerForm,
  IEditFormValues
} from '../servers/editForm';
import { ServerList } from '../servers/list';
import { ServersModel } from '../servers/model';
import { ICloud, IServer } from '../servers/types';
import { EditSection } from '../servers/editSection';
import { ComputeServersSidebar } from '../sidebar';
import { JupyterServer, sleep } from './jupyterServer';
import {
  makeServer as baseServer,
  mountReactPerTest,
  renderOutsideAct,
  typeInto,
  until
} from './testing';

function makeServer(overrides: Partial<IServer> = {}): IServer {
  return baseServer({
    id: 7,
    notes: 'for the paper',
    idle_timeout_minutes: 30,
    ...overrides
  });
}

const LOCAL: ICloud = {
  name: 'local',
  label: 'This machine',
  description: '',
  supports_suspend: false,
  config_fields: ['cpu', 'disk_gb', 'gpu', 'image', 'image_tag', 'memory_gb'],
  defaults: {},
  available: true,
  reason: '',
  offerings: {
    images: [{ id: 'python', label: 'Python', tags: ['system'] }],
    cpu: { min: 1, max: 8 },
    memory_gb: { min: 0.25, max: 16 },
    gpus: [],
    disk_gb: { min: 1, max: 100 }
  }
};

describe('the edit form values and request', () => {
  it("start from the server's settings", () => {
    const values = editFormValues(
      makeServer({
        spend_limit: { amount: 25, period_days: 7 },
        daily_stop: { time: '19:00', timezone: 'Europe/Berlin' }
      })
    );
    expect(values).toMatchObject({
      name: 'box',
      notes: 'for the paper',
      cpu: '2',
      memory_gb: '4',
      disk_gb: '10',
      idle_timeout_minutes: '30',
      spend_amount: '25',
      spend_period_days: '7',
      daily_stop_time: '19:00',
      daily_stop_timezone: 'Europe/Berlin'
    });
    // Without a daily stop, a new one is in the browser's time zone.
    expect(editFormValues(makeServer()).daily_stop_timezone).toBe(
      Intl.DateTimeFormat().resolvedOptions().timeZone
    );
  });

  it('send only what changed', () => {
    const server = makeServer();
    const values = editFormValues(server);
    expect(buildUpdateRequest(values, server, LOCAL)).toEqual({});
    const edited: IEditFormValues = {
      ...values,
      name: ' renamed ',
      cpu: '4',
      idle_timeout_minutes: '',
      spend_amount: '25',
      spend_period_days: '7',
      daily_stop_time: '19:00',
      daily_stop_timezone: 'Europe/Berlin'
    };
    expect(buildUpdateRequest(edited, server, LOCAL)).toEqual({
      name: 'renamed',
      idle_timeout_minutes: null,
      spend_limit: { amount: 25, period_days: 7 },
      daily_stop: { time: '19:00', timezone: 'Europe/Berlin' },
      config: { cpu: 4 }
    });
  });

  it('clear the limits when emptied, and send a half-typed one for the server to explain', () => {
    const server = makeServer({
      spend_limit: { amount: 25, period_days: 7 },
      daily_stop: { time: '19:00', timezone: null }
    });
    const values = editFormValues(server);
    expect(
      buildUpdateRequest(
        {
          ...values,
          spend_amount: '',
          spend_period_days: '',
          daily_stop_time: ''
        },
        server,
        LOCAL
      )
    ).toEqual({ spend_limit: null, daily_stop: null });
    expect(
      buildUpdateRequest(
        { ...values, spend_period_days: '', notes: 'x' },
        server,
        LOCAL
      )
    ).toEqual({ notes: 'x', spend_limit: { amount: 25 } });
  });

  it('leave the configuration alone without the cloud', () => {
    const server = makeServer();
    const values = { ...editFormValues(server), cpu: '4', notes: '' };
    expect(buildUpdateRequest(values, server, undefined)).toEqual({
      notes: ''
    });
  });

  it('map the fields of API errors to inputs', () => {
    expect(editErrorKeyFor('spend_limit.amount')).toBe('spend_amount');
    expect(editErrorKeyFor('spend_limit.period_days')).toBe(
      'spend_period_days'
    );
    expect(editErrorKeyFor('daily_stop.time')).toBe('daily_stop_time');
    expect(editErrorKeyFor('daily_stop.timezone')).toBe('daily_stop_timezone');
    expect(editErrorKeyFor('idle_timeout_minutes')).toBe(
      'idle_timeout_minutes'
    );
    expect(editErrorKeyFor('config.cpu')).toBe('cpu');
    expect(editErrorKeyFor('config.image')).toBe('image');
    expect(editErrorKeyFor('sync')).toBe('general');
  });

  it('say what cannot change in each state', () => {
    expect(editLocks('deprovisioned')).toEqual({});
    const off = editLocks('off');
    expect(Object.keys(off).sort()).toEqual(
      [
        'disk_type',
        'gpu_presence',
        'image',
        'image_tag',
        'region',
        'zone'
      ].sort()
    );
    expect(off.image).toBe('Changes only while deprovisioned (it is off).');
    const running = editLocks('running');
    expect(running.cpu).toBe(
      'Changes only while off or deprovisioned (it is running): stop it first.'
    );
    expect(running.disk_gb).toBeUndefined();
    expect(editLocks('stopping').disk_gb).toBe(
      'The disk cannot be resized while the server is stopping.'
    );
  });
});

describe('EditServerForm', () => {
  const mount = mountReactPerTest();

  it('disables what the state forbids, saying why, and leaves the rest', () => {
    const server = makeServer({ state: 'running' });
    mount.render(
      <EditServerForm
        server={server}
        cloud={LOCAL}
        values={editFormValues(server)}
        errors={{ spend_amount: 'spend_limit.amount must be above 0.' }}
        onChange={() => undefined}
      />
    );
    const input = (name: string) =>
      mount.container.querySelector<HTMLInputElement>(`[name="${name}"]`)!;
    expect(input('cpu').disabled).toBe(true);
    expect(input('disk_gb').disabled).toBe(false);
    expect(input('name').disabled).toBe(false);
    expect(input('spend_amount').disabled).toBe(false);
    expect(
      mount.container.querySelector('[data-field="cpu"]')!.textContent
    ).toContain('stop it first');
    expect(
      mount.container.querySelector(
        '[data-field="spend_amount"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toBe('spend_limit.amount must be above 0.');
    expect(mount.container.textContent).toContain('On This machine, running.');
  });

  it('shows no hardware for a cloud not enabled here', () => {
    const server = makeServer({ cloud: 'gone' });
    mount.render(
      <EditServerForm
        server={server}
        cloud={undefined}
        values={editFormValues(server)}
        errors={{}}
        onChange={() => undefined}
      />
    );
    expect(mount.container.querySelector('[name="cpu"]')).toBeNull();
    expect(mount.container.textContent).toContain(
      'The gone cloud is not enabled here'
    );
  });
});

describe('the row', () => {
  const mount = mountReactPerTest();

  it('shows the spend limit', () => {
    mount.render(
      <ServerList
        servers={[
          makeServer({ spend_limit: { amount: 25, period_days: 7 } }),
          makeServer({
            id: 8,
            name: 'daily',
            spend_limit: { amount: 2.5, period_days: 1 }
          })
        ]}
        loaded={true}
        onAction={() => undefined}
      />
    );
    const limits = Array.from(
      mount.container.querySelectorAll('.jp-ComputeServers-spendLimit')
    ).map(e => e.textContent);
    expect(limits).toEqual(['limit $25.00 per 7 days', 'limit $2.50 per day']);
  });
});

describe('the edit dialog with a real server', () => {
  const api = new JupyterServer();
  let model: ServersModel;
  renderOutsideAct();

  beforeAll(async () => {
    await api.start();
  }, 90000);
  afterAll(async () => {
    await api.stop();
  }, 90000);

  beforeEach(async () => {
    await api.cleanup();
    model = new ServersModel(api.settings);
    await model.refreshClouds();
  });

  let dialogs: EditServerDialog[] = [];
  afterEach(() => {
    for (const dialog of dialogs) {
      dialog.reject();
      dialog.dispose();
    }
    dialogs = [];
    model.dispose();
  });

  function open(server: IServer): {
    body: EditServerBody;
    dialog: EditServerDialog;
  } {
    const body = new EditServerBody(model, server, { estimateDelay: 20 });
    const dialog = new EditServerDialog(body);
    dialogs.push(dialog);
    return { body, dialog };
  }

  function type(name: string, value: string): void {
    const input = document.querySelector<HTMLInputElement>(
      `.jp-Dialog input[name="${name}"]`
    )!;
    typeInto(input, value);
  }

  function saveButton(): HTMLButtonElement {
    return document.querySelector<HTMLButtonElement>(
      '.jp-Dialog .jp-ComputeServers-editSave'
    )!;
  }

  const summary = () =>
    document.querySelector('.jp-Dialog .jp-ComputeServers-estimateSummary')
      ?.textContent ?? '';

  it('saves a spend limit, idle timeout and daily stop, sending only those', async () => {
    const created = await api.create('limited');
    await model.refresh();
    const { dialog } = open(created);
    const done = dialog.launch();
    await until(() => summary().includes('running'), 10000);
    // The local cloud is free by default, and says so.
    expect(summary()).toBe('$0/h running · $0/h off · ~$0 for 30 days');
    const estimate = api.requests.find(r => r.path.endsWith('/estimate'))!;
    expect(estimate.body).toEqual({
      server_id: created.id,
      config: {},
      hours_per_day: 24
    });

    type('spend_amount', '25');
    type('spend_period_days', '7');
    type('idle_timeout_minutes', '45');
    type('daily_stop_time', '19:00');
    type('daily_stop_timezone', 'Europe/Berlin');
    saveButton().click();
    const result = await done;

    expect(result.button.accept).toBe(true);
    expect(result.value).toMatchObject({
      spend_limit: { amount: 25, period_days: 7 },
      idle_timeout_minutes: 45,
      daily_stop: { time: '19:00', timezone: 'Europe/Berlin' }
    });
    const patches = api.requests.filter(r => r.method === 'PATCH');
    expect(patches.map(p => p.body)).toEqual([
      {
        idle_timeout_minutes: 45,
        spend_limit: { amount: 25, period_days: 7 },
        daily_stop: { time: '19:00', timezone: 'Europe/Berlin' }
      }
    ]);
    expect(await api.get(created.id)).toMatchObject({
      spend_limit: { amount: 25, period_days: 7 },
      idle_timeout_minutes: 45
    });
    expect(model.server(created.id)!.spend_limit).toEqual({
      amount: 25,
      period_days: 7
    });
  });

  it("shows the server's refusal by its field and stays open", async () => {
    const created = await api.create('picky');
    await model.refresh();
    const { dialog } = open(created);
    let closed = false;
    void dialog.launch().then(() => (closed = true));
    await until(() => document.querySelector('.jp-Dialog') !== null);
    await sleep(0);

    type('spend_amount', '-5');
    type('spend_period_days', '7');
    saveButton().click();
    await until(
      () =>
        document.querySelector(
          '.jp-Dialog [data-field="spend_amount"] .jp-ComputeServers-fieldError'
        ) !== null
    );
    expect(
      document.querySelector(
        '.jp-Dialog [data-field="spend_amount"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toContain('spend_limit.amount');
    expect(closed).toBe(false);
    expect((await api.get(created.id)).spend_limit).toBeNull();
  });

  it('shows a 409 by the field when a change needs the server off, then follows its state', async () => {
    const created = await api.create('busy');
    await model.refresh();
    const { body, dialog } = open(created);
    void dialog.launch();
    await until(() => document.querySelector('.jp-Dialog') !== null);
    await sleep(0);

    // Started elsewhere (another tab, the CLI) while the dialog is open.
    await api.act(created.id, 'start');
    type('cpu', '1');
    saveButton().click();
    await until(
      () =>
        document.querySelector(
          '.jp-Dialog [data-field="cpu"] .jp-ComputeServers-fieldError'
        ) !== null,
      10000
    );
    expect(
      document.querySelector(
        '.jp-Dialog [data-field="cpu"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toBe(
      'config.cpu can change only while the server is off or deprovisioned (it is running). Stop it first.'
    );
    expect(dialog.isDisposed).toBe(false);

    // Once the list knows it runs, the form says so before anything is sent.
    await model.refresh();
    await until(
      () =>
        document.querySelector<HTMLInputElement>(
          '.jp-Dialog input[name="cpu"]'
        )!.disabled
    );
    expect(
      document.querySelector('.jp-Dialog [data-field="cpu"]')!.textContent
    ).toContain('stop it first');
    expect(body.server.state).toBe('running');
    // The disk may still grow while it runs.
    expect(
      document.querySelector<HTMLInputElement>(
        '.jp-Dialog input[name="disk_gb"]'
      )!.disabled
    ).toBe(false);
  });

  it('reads the image catalogue once per switch position', async () => {
    const catalog = new ImageCatalogState({
      fetch: untested => model.images(untested)
    });
    await catalog.load();
    expect(catalog.images!.map(i => i.id)).toContain('python');
    catalog.setAdvanced(true);
    await until(() => !catalog.loading);
    catalog.setAdvanced(false);
    catalog.setAdvanced(true);
    await catalog.load();
    expect(api.requests.filter(r => r.path.endsWith('/images')).length).toBe(2);
  });
});

describe('the Edit button', () => {
  renderOutsideAct();

  it("is in every server's row and opens the edit dialog for it", async () => {
    const server = makeServer();
    const servers = {
      servers: [server],
      clouds: [],
      loaded: true,
      error: null,
      changed: { connect: () => true, disconnect: () => true }
    } as any;
    const status = {
      snapshot: {
        state: 'ok',
        frontendVersion: '0',
        status: null,
        error: null
      },
      changed: { connect: () => true, disconnect: () => true }
    } as any;
    const edited: string[] = [];
    const sidebar = new ComputeServersSidebar({ status, model: servers });
    sidebar.addSection(new EditSection(s => edited.push(s.name)));
    Widget.attach(sidebar, document.body);
    await until(
      () => sidebar.node.querySelector('.jp-ComputeServers-editButton') !== null
    );
    sidebar.node
      .querySelector<HTMLButtonElement>('.jp-ComputeServers-editButton')!
      .click();
    expect(edited).toEqual(['box']);
    sidebar.dispose();
  });
});
