/**
 * The image picker: which images a cloud and its hardware are offered (the catalogue entries
 * below are shaped as `GET images` answers, see jupyter_compute_servers/images/catalog.json),
 * the cards, what choosing one changes (a GPU added or removed, the disk raised), and, against
 * a real `jupyter server`, the create dialog's cards with the "Advanced" switch.
 */
import * as React from 'react';
import { act } from 'react';

import { CreateServerBody, CreateServerDialog } from '../servers/createDialog';
import { initialValues } from '../servers/createForm';
import { ServersModel } from '../servers/model';
import { ICloud } from '../servers/types';
import { withImage } from '../create/hardware';
import { imageChoices, imagesFromOfferings, safeIcon } from '../create/images';
import { ImagePicker } from '../create/imagePicker';
import { IImage } from '../create/types';
import { JupyterServer, sleep } from './jupyterServer';
import {
  mountReactPerTest,
  renderOutsideAct,
  typeInto,
  until
} from './testing';

const PYTHON: IImage = {
  id: 'python',
  label: 'Python (the machine’s own)',
  description: 'The server’s own python3 with ipykernel.',
  priority: 100,
  gpu: 'optional',
  arch: ['x86_64', 'arm64'],
  min_disk_gb: 1,
  runtime: { kind: 'python', python: 'python3' },
  versions: [{ tag: 'system', label: 'System Python', tested: true }]
};

const SCIPY: IImage = {
  id: 'scipy',
  label: 'SciPy',
  description: 'NumPy, pandas, SciPy, in a container.',
  gpu: 'none',
  arch: ['x86_64', 'arm64'],
  min_disk_gb: 10,
  runtime: { kind: 'docker', image: 'quay.io/jupyter/scipy-notebook:{tag}' },
  versions: [
    { tag: '2025-03-14', label: 'Python 3.12 (2025-03-14)', tested: true },
    { tag: '2024-10-01', label: 'Python 3.11 (2024-10-01)', tested: false }
  ]
};

const PYTORCH: IImage = {
  id: 'pytorch',
  label: 'PyTorch with CUDA',
  icon: 'data:image/png;base64,iVBORw0KGgo=',
  gpu: 'required',
  arch: ['x86_64'],
  min_disk_gb: 30,
  runtime: { kind: 'docker' },
  versions: [
    { tag: 'cuda12-2025-03-14', label: 'PyTorch 2.6, CUDA 12', tested: false }
  ]
};

const ARM_ONLY: IImage = {
  id: 'arm-thing',
  label: 'Arm only',
  arch: ['arm64'],
  runtime: { kind: 'python' },
  versions: [{ tag: '1', label: '1', tested: true }]
};

const CATALOGUE = [PYTHON, SCIPY, PYTORCH, ARM_ONLY];

/** A local cloud with one kind of GPU, which this machine may not have. */
const LOCAL: ICloud = {
  name: 'local',
  label: 'This machine',
  description: '',
  supports_suspend: false,
  config_fields: ['cpu', 'disk_gb', 'gpu', 'image', 'image_tag', 'memory_gb'],
  defaults: {
    image: 'python',
    image_tag: 'system',
    cpu: 2,
    memory_gb: 4,
    gpu: null,
    disk_gb: 10
  },
  available: true,
  reason: '',
  offerings: {
    images: [
      { id: 'python', label: 'Python', tags: ['system'] },
      { id: 'scipy', label: 'SciPy', tags: ['2025-03-14', '2024-10-01'] },
      { id: 'pytorch', label: 'PyTorch', tags: ['cuda12-2025-03-14'] }
    ],
    cpu: { min: 1, max: 8 },
    memory_gb: { min: 0.25, max: 16 },
    gpus: [{ type: 'NVIDIA T4', max_count: 2 }],
    disk_gb: { min: 1, max: 100 }
  }
};

describe('which images are offered', () => {
  const ids = (choices: { image: IImage }[]) => choices.map(c => c.image.id);

  it('only those the cloud accepts, with the versions it accepts', () => {
    const choices = imageChoices(CATALOGUE, {
      offered: [
        { id: 'python', label: 'Python', tags: ['system'] },
        { id: 'scipy', label: 'SciPy', tags: ['2025-03-14'] }
      ],
      arch: null,
      gpu: 'possible'
    });
    expect(ids(choices)).toEqual(['python', 'scipy']);
    expect(choices[1].versions.map(v => v.tag)).toEqual(['2025-03-14']);
  });

  it('every image when the cloud does not say, but none for another architecture', () => {
    expect(
      ids(imageChoices(CATALOGUE, { arch: 'x86_64', gpu: 'possible' }))
    ).toEqual(['python', 'scipy', 'pytorch']);
    expect(
      ids(imageChoices(CATALOGUE, { arch: 'arm64', gpu: 'possible' }))
    ).toEqual(['python', 'scipy', 'arm-thing']);
  });

  it('images that need a GPU only where one can be had; choosing one then adds it', () => {
    expect(
      ids(imageChoices(CATALOGUE, { arch: 'x86_64', gpu: 'impossible' }))
    ).toEqual(['python', 'scipy']);
    const possible = imageChoices(CATALOGUE, {
      arch: 'x86_64',
      gpu: 'possible'
    });
    expect(possible.find(c => c.image.id === 'pytorch')!.note).toBe(
      'Choosing it adds a GPU.'
    );
    const chosen = imageChoices(CATALOGUE, { arch: 'x86_64', gpu: 'chosen' });
    expect(chosen.find(c => c.image.id === 'pytorch')!.note).toBe('');
    expect(chosen.find(c => c.image.id === 'scipy')!.note).toContain(
      'removes the GPU'
    );
  });

  it("falls back to the cloud's own list when the catalogue cannot be read", () => {
    const images = imagesFromOfferings(LOCAL.offerings.images!);
    expect(images.map(i => [i.id, i.versions.map(v => v.tag)])).toEqual([
      ['python', ['system']],
      ['scipy', ['2025-03-14', '2024-10-01']],
      ['pytorch', ['cuda12-2025-03-14']]
    ]);
  });

  it('shows only data: and https icons', () => {
    expect(safeIcon(PYTORCH.icon)).toBe(PYTORCH.icon);
    expect(safeIcon('https://example.org/x.svg')).toBe(
      'https://example.org/x.svg'
    );
    expect(safeIcon('http://example.org/x.svg')).toBeNull();
    expect(safeIcon('javascript:alert(1)')).toBeNull();
    expect(safeIcon(undefined)).toBeNull();
  });
});

describe('choosing an image', () => {
  const base = initialValues([LOCAL]);

  it('adds a GPU when it needs one, and raises the disk to its minimum', () => {
    const next = withImage(LOCAL, base, PYTORCH, 'cuda12-2025-03-14');
    expect(next).toMatchObject({
      image: 'pytorch',
      image_tag: 'cuda12-2025-03-14',
      gpu_type: 'NVIDIA T4',
      gpu_count: '1',
      disk_gb: '30'
    });
  });

  it('removes the GPU when it cannot use one, and keeps a disk big enough', () => {
    const withGpu = { ...base, gpu_type: 'NVIDIA T4', disk_gb: '50' };
    expect(withImage(LOCAL, withGpu, SCIPY, '2025-03-14')).toMatchObject({
      image: 'scipy',
      gpu_type: '',
      disk_gb: '50'
    });
  });

  it('leaves an empty disk to the default, and the GPU alone when optional', () => {
    const next = withImage(
      LOCAL,
      { ...base, disk_gb: '', gpu_type: 'NVIDIA T4' },
      PYTHON,
      'system'
    );
    expect(next).toMatchObject({ disk_gb: '', gpu_type: 'NVIDIA T4' });
  });
});

describe('ImagePicker', () => {
  const mount = mountReactPerTest();
  let selected: [string, string][];
  let advanced: boolean[];

  beforeEach(() => {
    selected = [];
    advanced = [];
  });

  function render(
    props: Partial<React.ComponentProps<typeof ImagePicker>> = {}
  ): void {
    mount.render(
      <ImagePicker
        choices={imageChoices(CATALOGUE, { arch: 'x86_64', gpu: 'possible' })}
        image="python"
        tag="system"
        advanced={false}
        onAdvanced={on => advanced.push(on)}
        onSelect={(image, tag) => selected.push([image.id, tag])}
        {...props}
      />
    );
  }

  function card(id: string): HTMLElement {
    return mount.container.querySelector<HTMLElement>(
      `.jp-ComputeServers-imageCard[data-image-id="${id}"]`
    )!;
  }

  it('shows a card per image: icon, label, description, GPU badge, versions', () => {
    render();
    const cards = Array.from(
      mount.container.querySelectorAll<HTMLElement>(
        '.jp-ComputeServers-imageCard'
      )
    );
    expect(cards.map(c => c.dataset.imageId)).toEqual([
      'python',
      'scipy',
      'pytorch'
    ]);
    expect(card('python').getAttribute('aria-checked')).toBe('true');
    expect(card('python').textContent).toContain('Python (the machine’s own)');
    expect(card('python').textContent).toContain(
      'The server’s own python3 with ipykernel.'
    );
    expect(
      card('python').querySelector('.jp-ComputeServers-gpuBadge')!.textContent
    ).toBe('can use a GPU');
    expect(
      card('pytorch').querySelector('.jp-ComputeServers-gpuBadge')!.textContent
    ).toBe('needs a GPU');
    expect(card('scipy').querySelector('.jp-ComputeServers-gpuBadge')).toBe(
      null
    );
    // An icon from the catalogue, else the label's initial.
    expect(card('pytorch').querySelector('img')!.getAttribute('src')).toBe(
      PYTORCH.icon
    );
    expect(
      card('python').querySelector('.jp-ComputeServers-imageIcon')!.textContent
    ).toBe('P');
    const versions = Array.from(card('scipy').querySelectorAll('option')).map(
      o => o.textContent
    );
    expect(versions).toEqual([
      'Python 3.12 (2025-03-14)',
      'Python 3.11 (2024-10-01) (untested)'
    ]);
    expect(card('pytorch').textContent).toContain('Choosing it adds a GPU.');
    // The chosen card's version select is the form's image_tag.
    expect(
      mount.container.querySelectorAll('select[name="image_tag"]')
    ).toHaveLength(1);
    expect(card('python').querySelector('select')!.getAttribute('name')).toBe(
      'image_tag'
    );
  });

  it('chooses an image by its card, or one of its versions, and flips Advanced', () => {
    render();
    act(() => card('scipy').click());
    const select = card('scipy').querySelector('select')!;
    act(() => {
      select.value = '2024-10-01';
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
    act(() => {
      card('python').click(); // already chosen: nothing
    });
    act(() => {
      card('scipy').dispatchEvent(
        new KeyboardEvent('keydown', { key: ' ', bubbles: true })
      );
    });
    expect(selected).toEqual([
      ['scipy', '2025-03-14'],
      ['scipy', '2024-10-01'],
      ['scipy', '2025-03-14']
    ]);
    act(() =>
      mount.container
        .querySelector<HTMLInputElement>('input[name="advanced"]')!
        .click()
    );
    expect(advanced).toEqual([true]);
  });

  it('shows only the image chosen when it cannot change, and says why', () => {
    render({ locked: 'Changes only while deprovisioned (it is off).' });
    expect(
      mount.container.querySelectorAll('.jp-ComputeServers-imageCard')
    ).toHaveLength(1);
    expect(card('python').querySelector('select')!.disabled).toBe(true);
    expect(mount.container.textContent).toContain(
      'Changes only while deprovisioned (it is off).'
    );
    act(() => card('python').click());
    expect(selected).toEqual([]);
  });

  it('says when the image chosen is not offered, and when none is', () => {
    render({ image: 'gone', tag: '1' });
    expect(mount.container.textContent).toContain(
      'gone:1 is not offered here: choose another image.'
    );
    render({ choices: [] });
    expect(mount.container.textContent).toContain(
      'No image of the catalogue can run with this cloud and hardware.'
    );
  });
});

describe('the create dialog’s image picker, with a real server', () => {
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

  let dialog: CreateServerDialog | null = null;
  afterEach(() => {
    dialog?.reject();
    dialog?.dispose();
    dialog = null;
    model.dispose();
  });

  function cardIds(): string[] {
    return Array.from(
      document.querySelectorAll<HTMLElement>(
        '.jp-Dialog .jp-ComputeServers-imageCard'
      )
    ).map(c => c.dataset.imageId!);
  }

  it('shows the tested images, and untested versions too with Advanced', async () => {
    const body = new CreateServerBody(model, { estimateDelay: 10 });
    dialog = new CreateServerDialog(body);
    void dialog.launch();
    await until(() => cardIds().length > 0, 10000);

    // The built-in catalogue's only tested image is the machine's own Python.
    expect(cardIds()).toEqual(['python']);
    const python = document.querySelector(
      '.jp-ComputeServers-imageCard[data-image-id="python"]'
    )!;
    expect(python.getAttribute('aria-checked')).toBe('true');
    expect(python.textContent).toContain('can use a GPU');
    expect(
      document.querySelector<HTMLSelectElement>('select[name="image_tag"]')!
        .value
    ).toBe('system');

    document.querySelector<HTMLInputElement>('input[name="advanced"]')!.click();
    await until(() => cardIds().length > 1, 10000);

    const offered = (await api.clouds())[0].offerings.images!.map(i => i.id);
    // Untested versions now, of the images this machine can run (no GPU here: none that
    // needs one, unless this machine has a GPU).
    const hasGpu = ((await api.clouds())[0].offerings.gpus ?? []).length > 0;
    const catalogue = (
      await api.call('GET', 'images?include_untested=true', undefined, 200)
    ).body.images as IImage[];
    const expected = catalogue
      .filter(i => offered.includes(i.id))
      .filter(i => hasGpu || i.gpu !== 'required')
      .map(i => i.id);
    expect(cardIds()).toEqual(expected);
    expect(cardIds()).toContain('scipy');
    const scipy = document.querySelector(
      '.jp-ComputeServers-imageCard[data-image-id="scipy"]'
    )!;
    expect(scipy.querySelector('option')!.textContent).toContain('(untested)');
    expect(
      api.requests
        .filter(r => r.method === 'GET' && r.path.endsWith('/images'))
        .map(r => r.path)
    ).toHaveLength(2);

    // Choosing SciPy raises a smaller disk to its minimum.
    const disk = document.querySelector<HTMLInputElement>(
      'input[name="disk_gb"]'
    )!;
    typeInto(disk, '5');
    await until(() => body.values.disk_gb === '5');
    (scipy as HTMLElement).click();
    await until(
      () =>
        document.querySelector<HTMLInputElement>('input[name="disk_gb"]')!
          .value === '10'
    );
    expect(body.values).toMatchObject({
      image: 'scipy',
      image_tag: catalogue.find(i => i.id === 'scipy')!.versions[0].tag
    });

    // Advanced off again: back to the tested versions, SciPy's untested one dropped.
    document.querySelector<HTMLInputElement>('input[name="advanced"]')!.click();
    await until(() => cardIds().length === 1);
    await sleep(0);
    expect(document.body.textContent).toContain('is not offered here');
  });

  it('lets an admin mark the chosen untested version tested, then offers it to all', async () => {
    const body = new CreateServerBody(model, { estimateDelay: 10 });
    dialog = new CreateServerDialog(body);
    void dialog.launch();
    // (standalone the one user is the admin: GET team says so, which shows the button)
    await until(() => body.team !== null && cardIds().length > 0, 10000);
    expect(document.querySelector('.jp-ComputeServers-markTested')).toBeNull();
    document.querySelector<HTMLInputElement>('input[name="advanced"]')!.click();
    await until(() => cardIds().includes('scipy'), 10000);
    (
      document.querySelector(
        '.jp-ComputeServers-imageCard[data-image-id="scipy"]'
      ) as HTMLElement
    ).click();
    await until(
      () => document.querySelector('.jp-ComputeServers-markTested') !== null
    );
    const tag = body.values.image_tag;
    document
      .querySelector<HTMLButtonElement>('.jp-ComputeServers-markTested')!
      .click();
    // Marked by the server: the button goes, and the tested catalogue offers SciPy now.
    await until(
      () => document.querySelector('.jp-ComputeServers-markTested') === null,
      10000
    );
    const marks = api.requests.filter(
      r => r.method === 'POST' && r.path.endsWith('/images/tested')
    );
    expect(marks).toHaveLength(1);
    document.querySelector<HTMLInputElement>('input[name="advanced"]')!.click();
    await until(() => cardIds().includes('scipy'), 10000);
    expect(
      document.querySelector<HTMLSelectElement>('select[name="image_tag"]')!
        .value
    ).toBe(tag);
    // (taken back, for the tests after)
    await api.call(
      'POST',
      'images/tested',
      { image: 'scipy', tag, tested: false },
      200
    );
  });
});
