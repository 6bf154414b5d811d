/**
 * The create dialog: what the form offers for a cloud, the request it sends, and that a
 * refusal from the server (a real `jupyter server` with the extension, see jupyterServer.ts)
 * is shown next to the field at fault while the dialog stays open with everything typed kept.
 */
import { Dialog } from '@jupyterlab/apputils';
import * as React from 'react';

import { CreateServerBody, CreateServerDialog } from '../servers/createDialog';
import {
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  FormErrors,
  ICreateFormValues,
  initialValues,
  quotaText,
  valuesForCloud
} from '../servers/createForm';
import { ServersModel } from '../servers/model';
import { ICloud, IServer } from '../servers/types';
import { JupyterServer, sleep } from './jupyterServer';
import { mountReactPerTest, typeInto, until } from './testing';

/**
 * Cloud descriptions as plain input for the form's pure functions and rendering (the dialog
 * tests below read the real server's clouds instead): a local cloud with GPUs and fixed
 * limits, which this machine may not have, and a cloud that is not available.
 */
const LOCAL_CLOUD: ICloud = {
  name: 'local',
  label: 'This machine',
  description: 'A sandbox on the machine running Jupyter.',
  supports_suspend: false,
  config_fields: ['cpu', 'disk_gb', 'gpu', 'image', 'image_tag', 'memory_gb'],
  defaults: {
    image: 'python',
    image_tag: 'system',
    cpu: 2,
    memory_gb: 4.0,
    gpu: null,
    disk_gb: 10
  },
  available: true,
  reason: '',
  offerings: {
    images: [{ id: 'python', label: 'Python 3', tags: ['system'] }],
    cpu: { min: 1, max: 4 },
    memory_gb: { min: 0.25, max: 8 },
    gpus: [{ type: 'T4', max_count: 2 }],
    disk_gb: { min: 1, max: 100 }
  }
};

const GCE_CLOUD: ICloud = {
  name: 'gce',
  label: 'Google Compute Engine',
  description: 'VMs on Google Cloud.',
  supports_suspend: true,
  config_fields: ['machine_type', 'disk_gb', 'gpu', 'zone'],
  defaults: {},
  available: false,
  reason: 'no credentials found; run gcloud auth application-default login',
  offerings: {}
};

describe('create form values', () => {
  it('start from the first available cloud and its defaults', () => {
    const values = initialValues([GCE_CLOUD, LOCAL_CLOUD], 1);
    expect(values).toEqual({
      name: '',
      cloud: 'local',
      color: '#ff7f0e',
      image: 'python',
      image_tag: 'system',
      cpu: '2',
      memory_gb: '4',
      disk_gb: '10',
      gpu_type: '',
      gpu_count: '1',
      // Whole GPUs: shares are only the ssh cloud's, where a host allows them.
      gpu_fraction: '',
      // No host: only the ssh cloud has hosts.
      host: '',
      // Only the gcp cloud has machine types, regions, zones, disk types and spot.
      machine_type: '',
      region: '',
      zone: '',
      disk_type: '',
      spot: false,
      // Synced, as before mounts: a copy works offline.
      workspace_mode: 'synced',
      mount_path: '',
      mount_read_only: false
    });
  });

  it('take the new cloud defaults when the cloud changes, keeping name and colour', () => {
    const values = { ...initialValues([LOCAL_CLOUD]), name: 'kept' };
    const other = valuesForCloud(
      {
        ...LOCAL_CLOUD,
        name: 'ssh',
        defaults: { cpu: 8, gpu: { type: 'A100', count: 2 } }
      },
      values
    );
    expect(other).toMatchObject({
      name: 'kept',
      cloud: 'ssh',
      cpu: '8',
      memory_gb: '',
      gpu_type: 'A100',
      gpu_count: '2',
      image: 'python'
    });
  });

  it('build a request with only the fields the cloud uses', () => {
    const values: ICreateFormValues = {
      ...initialValues([LOCAL_CLOUD]),
      name: ' box ',
      cpu: '3',
      memory_gb: '0.5',
      disk_gb: '',
      gpu_type: 'T4',
      gpu_count: '2'
    };
    expect(buildCreateRequest(values, LOCAL_CLOUD)).toEqual({
      name: 'box',
      cloud: 'local',
      color: '#1f77b4',
      config: {
        image: 'python',
        image_tag: 'system',
        cpu: 3,
        memory_gb: 0.5,
        gpu: { type: 'T4', count: 2 }
      }
    });
    const fewer = { ...LOCAL_CLOUD, config_fields: ['disk_gb'] };
    expect(
      buildCreateRequest({ ...values, disk_gb: '20' }, fewer).config
    ).toEqual({ disk_gb: 20 });
  });

  it('send no GPU when none is chosen, and what is not a number as typed', () => {
    const values = {
      ...initialValues([LOCAL_CLOUD]),
      name: 'x',
      cpu: 'two'
    };
    expect(buildCreateRequest(values, LOCAL_CLOUD).config).toMatchObject({
      cpu: 'two',
      gpu: null
    });
  });

  it('map the field of an API error to the input that shows it', () => {
    expect(errorKeyFor('name')).toBe('name');
    expect(errorKeyFor('cloud')).toBe('cloud');
    expect(errorKeyFor('config.cpu')).toBe('cpu');
    expect(errorKeyFor('config.memory_gb')).toBe('memory_gb');
    expect(errorKeyFor('config.gpu')).toBe('gpu');
    expect(errorKeyFor('config.gpu.type')).toBe('gpu');
    expect(errorKeyFor('config.gpu.count')).toBe('gpu_count');
    expect(errorKeyFor('config.zone')).toBe('zone');
    expect(errorKeyFor('config.machine_type')).toBe('machine_type');
    expect(errorKeyFor('config.extra.foo')).toBe('general');
    expect(errorKeyFor(null)).toBe('general');
  });
});

describe('CreateServerForm', () => {
  const mount = mountReactPerTest();

  function render(values: ICreateFormValues, errors: FormErrors = {}) {
    mount.render(
      <CreateServerForm
        clouds={[LOCAL_CLOUD, GCE_CLOUD]}
        values={values}
        errors={errors}
        onChange={() => undefined}
      />
    );
  }

  it('disables unavailable clouds, with their reason', () => {
    render(initialValues([LOCAL_CLOUD, GCE_CLOUD]));
    const options = Array.from(
      mount.container.querySelectorAll<HTMLOptionElement>(
        'select[name="cloud"] option'
      )
    );
    expect(options.map(o => [o.value, o.disabled])).toEqual([
      ['local', false],
      ['gce', true]
    ]);
    expect(options[1].textContent).toContain(GCE_CLOUD.reason);
  });

  it("offers the cloud's fields with their ranges, and GPUs when offered", () => {
    render({ ...initialValues([LOCAL_CLOUD]), gpu_type: 'T4' });
    const names = Array.from(
      mount.container.querySelectorAll<HTMLInputElement | HTMLSelectElement>(
        'input, select'
      )
    ).map(e => e.name);
    expect(names).toEqual([
      'name',
      'cloud',
      // The image picker: its Advanced switch, and the chosen card's version.
      'advanced',
      'image_tag',
      'cpu',
      'memory_gb',
      'disk_gb',
      'gpu_type',
      'gpu_count',
      // The workspace: synced, so no mount inputs.
      'workspace_mode',
      'color'
    ]);
    const cpu =
      mount.container.querySelector<HTMLInputElement>('input[name="cpu"]')!;
    expect(cpu.value).toBe('2');
    // No native constraints: the dialog would refuse to accept without saying why.
    expect(mount.container.querySelector(':invalid')).toBeNull();
    expect(cpu.max).toBe('');
    expect(
      mount.container.querySelector('[data-field="cpu"]')!.textContent
    ).toContain('CPUs (1–4)');
    expect(
      mount.container.querySelector('[data-field="memory_gb"]')!.textContent
    ).toContain('Memory, GB (0.25–8)');
    expect(
      mount.container.querySelector('[data-field="gpu_count"]')!.textContent
    ).toContain('GPU count (1–2)');
  });

  it('leaves out GPU inputs for a cloud without GPUs', () => {
    const noGpus = {
      ...LOCAL_CLOUD,
      offerings: { ...LOCAL_CLOUD.offerings, gpus: [] }
    };
    mount.render(
      <CreateServerForm
        clouds={[noGpus]}
        values={initialValues([noGpus])}
        errors={{}}
        onChange={() => undefined}
      />
    );
    expect(mount.container.querySelector('select[name="gpu_type"]')).toBeNull();
    expect(mount.container.querySelector('input[name="gpu_count"]')).toBeNull();
  });

  it('shows an error next to its field', () => {
    render(initialValues([LOCAL_CLOUD]), {
      cpu: 'config.cpu is 9, but this machine has 4 CPUs.'
    });
    const field = mount.container.querySelector('[data-field="cpu"]')!;
    expect(field.classList).toContain('jp-ComputeServers-fieldInvalid');
    // jp-mod-error would keep a Dialog from accepting.
    expect(mount.container.querySelector('.jp-mod-error')).toBeNull();
    expect(
      field.querySelector('.jp-ComputeServers-fieldError')!.textContent
    ).toBe('config.cpu is 9, but this machine has 4 CPUs.');
    expect(
      mount.container.querySelectorAll('.jp-ComputeServers-fieldError')
    ).toHaveLength(1);
  });
});

describe('CreateServerDialog', () => {
  const api = new JupyterServer();
  let model: ServersModel;
  /** How many CPUs the real local cloud offers (this machine's). */
  let cpus: number;

  // The dialog renders its body on its own schedule (Lumino's update requests), as in the
  // browser: the tests wait for what they expect rather than wrap renders in act().
  beforeAll(async () => {
    (globalThis as any).IS_REACT_ACT_ENVIRONMENT = false;
    await api.start();
    cpus = (await api.clouds())[0].offerings.cpu!.max;
  }, 90000);
  afterAll(async () => {
    (globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;
    await api.stop();
  }, 90000);

  beforeEach(async () => {
    await api.cleanup();
    model = new ServersModel(api.settings);
    await model.refreshClouds();
  });

  let dialogs: CreateServerDialog[] = [];

  /** A new create dialog, closed after the test whatever happens (dialogs queue up). */
  function open(): CreateServerDialog {
    const dialog = new CreateServerDialog(new CreateServerBody(model));
    dialogs.push(dialog);
    return dialog;
  }

  afterEach(() => {
    for (const dialog of dialogs) {
      dialog.reject();
      dialog.dispose();
    }
    dialogs = [];
    model.dispose();
  });

  function type(name: string, value: string): void {
    const input = document.querySelector<HTMLInputElement>(
      `.jp-Dialog input[name="${name}"]`
    )!;
    typeInto(input, value);
  }

  function createButton(): HTMLButtonElement {
    return document.querySelector<HTMLButtonElement>(
      '.jp-Dialog .jp-ComputeServers-createButton'
    )!;
  }

  it('stays open on a refusal, showing it by the field, and creates once fixed', async () => {
    const dialog = open();
    let result: Dialog.IResult<IServer | null> | null = null;
    void dialog.launch().then(r => (result = r));
    await until(() => document.querySelector('.jp-Dialog') !== null);
    await sleep(0);

    type('name', 'gpu-box');
    type('cpu', String(cpus + 7));
    createButton().click();
    await until(
      () => document.querySelector('.jp-ComputeServers-fieldError') !== null
    );

    expect(result).toBeNull();
    expect(dialog.isDisposed).toBe(false);
    const cpuField = document.querySelector('[data-field="cpu"]')!;
    expect(
      cpuField.querySelector('.jp-ComputeServers-fieldError')!.textContent
    ).toBe(`config.cpu is ${cpus + 7}, but this machine has ${cpus} CPUs.`);
    expect(
      document.querySelector<HTMLInputElement>('input[name="name"]')!.value
    ).toBe('gpu-box');
    expect(
      document.querySelector<HTMLInputElement>('input[name="cpu"]')!.value
    ).toBe(String(cpus + 7));

    type('cpu', String(cpus));
    // Editing drops the stale error, and the dialog still accepts.
    await until(
      () =>
        document.querySelector(
          '[data-field="cpu"] .jp-ComputeServers-fieldError'
        ) === null
    );
    expect(createButton().disabled).toBe(false);
    createButton().click();
    await until(() => result !== null);

    expect(result!.button.accept).toBe(true);
    expect(result!.value).toMatchObject({ name: 'gpu-box' });
    expect(result!.value!.config.cpu).toBe(cpus);
    expect(model.servers.map(s => s.name)).toEqual(['gpu-box']);
    const posts = api.requests.filter(
      r => r.method === 'POST' && r.path.endsWith('/servers')
    );
    expect(posts).toHaveLength(2);
    expect(posts.map(p => p.body.config.cpu)).toEqual([cpus + 7, cpus]);
    expect((await api.list()).map(s => [s.name, s.config.cpu])).toEqual([
      ['gpu-box', cpus]
    ]);
  });

  it('shows a taken name by the name field', async () => {
    await api.create('taken');
    const dialog = open();
    void dialog.launch();
    await until(() => document.querySelector('.jp-Dialog') !== null);
    await sleep(0);

    type('name', 'taken');
    createButton().click();
    await until(
      () => document.querySelector('.jp-ComputeServers-fieldError') !== null
    );

    expect(
      document.querySelector(
        '[data-field="name"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toBe("A compute server named 'taken' already exists.");
    dialog.reject();
  });

  it('creates nothing when cancelled', async () => {
    const dialog = open();
    const done = dialog.launch();
    await until(() => document.querySelector('.jp-Dialog') !== null);
    type('name', 'never');

    dialog.reject();
    const result = await done;

    expect(result.button.accept).toBe(false);
    // Only estimates were asked for (they change nothing).
    expect(
      api.requests.filter(
        r => r.method === 'POST' && !r.path.endsWith('/estimate')
      )
    ).toHaveLength(0);
    expect(await api.list()).toEqual([]);
  });
});

describe('the quota before a create (team mode)', () => {
  const NO_LIMITS = {
    running_servers: null,
    gpus: null,
    gpus_per_host: null,
    cpu: null,
    memory_gb: null,
    monthly_spend: null
  };
  const TEAM = {
    team_mode: true,
    user: { name: 'alice', groups: ['course'], admin: false },
    owner: 'alice',
    month: '2026-12',
    quota: { ...NO_LIMITS, running_servers: 2, gpus: 2 },
    used: {
      running_servers: 1,
      gpus: 1,
      cpu: 0,
      memory_gb: 0,
      monthly_spend: 0
    },
    left: { ...NO_LIMITS, running_servers: 1, gpus: 1 }
  };

  it('says what the owner may still start, and nothing without limits', () => {
    expect(quotaText(TEAM)).toBe(
      'You may start 1 more compute server (1 of 2 running); 1 of 2 GPUs left.'
    );
    expect(
      quotaText({
        ...TEAM,
        quota: { ...NO_LIMITS, gpus: 1 },
        left: { ...NO_LIMITS, gpus: 0 }
      })
    ).toBe('0 of 1 GPU left.');
    // Shared hosts' CPUs and RAM, this month's spend, and the queue's per-user cap.
    expect(
      quotaText({
        ...TEAM,
        quota: {
          ...NO_LIMITS,
          cpu: 8,
          memory_gb: 32,
          monthly_spend: 50,
          gpus_per_host: 1
        },
        left: {
          ...NO_LIMITS,
          cpu: 4,
          memory_gb: 10.5,
          monthly_spend: 12.5,
          gpus_per_host: 1
        }
      })
    ).toBe(
      '4 of 8 CPUs left on shared hosts; 10.5 of 32 GB of RAM left on shared hosts; ' +
        '$12.50 of $50.00 left this month; at most 1 GPU of one shared host at once.'
    );
    expect(quotaText({ ...TEAM, quota: NO_LIMITS, left: NO_LIMITS })).toBe(
      null
    );
    expect(quotaText({ ...TEAM, team_mode: false })).toBe(null);
  });

  describe('in the dialog, from a real team-mode server', () => {
    const api = new JupyterServer({
      config: {
        ComputeServersApp: {
          team_mode: true,
          quotas: { '*': { running_servers: 2, gpus: 1 } }
        }
      }
    });
    let model: ServersModel;

    beforeAll(async () => {
      (globalThis as any).IS_REACT_ACT_ENVIRONMENT = false;
      await api.start();
      model = new ServersModel(api.settings);
      await model.refreshClouds();
    }, 90000);
    afterAll(async () => {
      (globalThis as any).IS_REACT_ACT_ENVIRONMENT = true;
      model.dispose();
      await api.stop();
    }, 90000);

    it('shows it above the estimate', async () => {
      const dialog = new CreateServerDialog(new CreateServerBody(model));
      void dialog.launch();
      try {
        await until(
          () =>
            document.querySelector('.jp-Dialog .jp-ComputeServers-quota')
              ?.textContent ===
            'You may start 2 more compute servers (0 of 2 running); 1 of 1 GPU left.',
          30000
        );
      } finally {
        dialog.reject();
        dialog.dispose();
      }
    });
  });
});
