/**
 * The create form on the openstack cloud, from offerings shaped as `GET clouds` answers them
 * (tests/test_openstack.py checks the real answer against the fake OpenStack): the network
 * select (the admin's network by default), its hint (floating IP or fixed IP; a key pair of
 * the server's own), the request it makes, and the server's error by the select.
 */
import * as React from 'react';
import { act } from 'react';

import {
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  FormErrors,
  ICreateFormValues,
  initialValues
} from '../servers/createForm';
import { ICloud } from '../servers/types';
import { IOpenStackOfferings } from '../create/types';
import { mountReactPerTest } from './testing';

const MEDIUM = {
  family: 'cpu',
  cpu: 4,
  memory_gb: 8,
  disk_gb: 50,
  gpus_attachable: false,
  arch: 'x86_64'
};

const OFFERINGS: IOpenStackOfferings = {
  project: 'conda-forge',
  live: true,
  default_region: '',
  default_zone: '',
  regions: [],
  machine_types: [
    { ...MEDIUM, name: 'ci_medium', gpu: null },
    {
      ...MEDIUM,
      name: 'gpu_medium',
      family: 'gpu',
      gpu: { type: 'v100', count: 1 }
    }
  ],
  gpus: [],
  disk_types: [],
  disk_gb: { min: 1, max: 100 },
  spot: false,
  glance_images: [
    { id: 'ee45', name: 'ubuntu-2204-20230914', min_disk: 10 },
    { id: 'dd46', name: 'ubuntu-2204-nvidia-20230914', min_disk: 20 }
  ],
  networks: [
    { id: '11aa', name: 'gpu-lan', external: false },
    { id: '663b', name: 'private', external: false },
    { id: 'acdd', name: 'public', external: true }
  ],
  network: 'private',
  floating_ip_network: 'public',
  key_pairs: ['alice-laptop'],
  gpu_queue: 0
};

function openstackCloud(offerings: Partial<IOpenStackOfferings> = {}): ICloud {
  return {
    name: 'openstack',
    label: 'OpenStack',
    description: 'A VM of an OpenStack project.',
    supports_suspend: true,
    config_fields: ['gpu', 'image', 'image_tag', 'machine_type'],
    defaults: {
      image: 'python',
      image_tag: 'system',
      machine_type: 'ci_medium',
      gpu: null
    },
    available: true,
    reason: '',
    offerings: { ...OFFERINGS, ...offerings } as unknown as ICloud['offerings']
  };
}

describe('the create form on the openstack cloud', () => {
  const mount = mountReactPerTest();
  let current: ICreateFormValues;

  function render(
    cloud: ICloud,
    start: ICreateFormValues,
    errors: FormErrors = {}
  ): void {
    current = start;
    const draw = () =>
      mount.render(
        <CreateServerForm
          clouds={[cloud]}
          values={current}
          errors={errors}
          onChange={update => {
            current = update(current);
            draw();
          }}
        />
      );
    draw();
  }

  function select(): HTMLSelectElement | null {
    return mount.container.querySelector<HTMLSelectElement>(
      'select[name="network"]'
    );
  }

  function hint(): string {
    return (
      mount.container.querySelector(
        '[data-field="network"] .jp-ComputeServers-fieldHint'
      )?.textContent ?? ''
    );
  }

  it("offers the project's networks, the admin's chosen", () => {
    const cloud = openstackCloud();
    render(cloud, initialValues([cloud]));
    expect(select()!.value).toBe('private');
    expect(
      Array.from(select()!.options).map(o => [o.value, o.textContent])
    ).toEqual([
      ['gpu-lan', 'gpu-lan'],
      ['private', 'private — default'],
      ['public', 'public (external)']
    ]);
    // How the server is reached, and why no key pair is asked.
    expect(hint()).toContain('A floating IP from public is attached');
    expect(hint()).toContain('Each server gets an SSH key pair of its own');
  });

  it('sends the network chosen in config.extra', () => {
    const cloud = openstackCloud();
    render(cloud, { ...initialValues([cloud]), name: 'lan' });
    act(() => {
      select()!.value = 'gpu-lan';
      select()!.dispatchEvent(new Event('change', { bubbles: true }));
    });
    expect(current.network).toBe('gpu-lan');
    expect(buildCreateRequest(current, cloud)).toEqual({
      name: 'lan',
      cloud: 'openstack',
      color: current.color,
      config: {
        image: 'python',
        image_tag: 'system',
        machine_type: 'ci_medium',
        gpu: null,
        extra: { network: 'gpu-lan' }
      }
    });
  });

  it('says servers are reached at their fixed IP without a floating IP network', () => {
    const cloud = openstackCloud({ floating_ip_network: '' });
    render(cloud, initialValues([cloud]));
    expect(hint()).toContain('at its fixed IP on this network');
    expect(hint()).not.toContain('floating IP from');
  });

  it("shows the server's complaint about the network by its select", () => {
    const cloud = openstackCloud();
    expect(errorKeyFor('config.extra.network')).toBe('network');
    render(cloud, initialValues([cloud]), {
      network: "config.extra.network 'gone' is not a network of project x."
    });
    expect(select()!.getAttribute('aria-invalid')).toBe('true');
    expect(
      mount.container.querySelector('[data-field="network"]')!.textContent
    ).toContain("'gone' is not a network");
  });

  it('has no network select, and sends no extra, without networks offered', () => {
    const cloud = openstackCloud({ networks: [] });
    render(cloud, initialValues([cloud]));
    expect(select()).toBeNull();
    expect(buildCreateRequest(current, cloud).config?.extra).toBeUndefined();
  });
});
