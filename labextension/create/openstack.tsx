/**
 * The openstack cloud's part of the create dialog: the network the server joins (one of the
 * project's, the admin's by default), with how Jupyter will reach it (a floating IP, or its
 * fixed IP) and why no key pair is asked (each server gets its own). Flavors are offered by
 * the hardware picker, images by the image picker. The network is fixed at create, so the
 * edit dialog does not offer it. The server checks the choice again.
 */
import * as React from 'react';

import { ICloud } from '../servers/types';
import { Field } from './field';
import { IOpenStackOfferings } from './types';

/** The openstack cloud's inputs in the create form, as typed. */
export interface IOpenStackValues {
  /** The network's name ('' or absent: the admin's). */
  network?: string;
}

/** Whether a cloud's offerings are the openstack cloud's, with networks to choose from. */
export function openstackOfferings(
  cloud: ICloud | undefined
): IOpenStackOfferings | null {
  const o = cloud?.offerings as Partial<IOpenStackOfferings> | undefined;
  return o && Array.isArray(o.networks) && o.networks.length > 0
    ? (o as IOpenStackOfferings)
    : null;
}

/** The network input set to the cloud's default (the admin's network). */
export function openstackDefaults(
  offerings: IOpenStackOfferings
): Required<IOpenStackValues> {
  return { network: offerings.network ?? '' };
}

/** The server's `config.extra` for the openstack inputs (none without a network chosen). */
export function openstackExtra(
  values: IOpenStackValues
): Record<string, unknown> | undefined {
  const network = (values.network ?? '').trim();
  return network ? { network } : undefined;
}

/** What the network hint says: how Jupyter reaches the server, and its key pair. */
export function networkHint(offerings: IOpenStackOfferings): string {
  const reach = offerings.floating_ip_network
    ? `A floating IP from ${offerings.floating_ip_network} is attached to the server, and ` +
      'Jupyter reaches it there.'
    : 'Jupyter reaches the server at its fixed IP on this network (no floating IP network ' +
      'is configured), so Jupyter must run where that network is reachable.';
  return (
    `${reach} Each server gets an SSH key pair of its own, made for it and deleted with ` +
    "it; the project's key pairs are not used. The network cannot be changed later."
  );
}

export interface IOpenStackFieldsProps<V extends IOpenStackValues> {
  offerings: IOpenStackOfferings;
  values: V;
  errors: Partial<Record<string, string>>;
  disabled?: boolean;
  onChange: (update: (values: V) => V) => void;
}

/** The network select. */
export function OpenStackFields<V extends IOpenStackValues>(
  props: IOpenStackFieldsProps<V>
): JSX.Element {
  const { offerings, values, errors, disabled } = props;
  const value = values.network ?? '';
  const known = offerings.networks.some(
    n => n.name === value || n.id === value
  );
  return (
    <Field
      name="network"
      label="Network"
      error={errors.network}
      hint={networkHint(offerings)}
    >
      <select
        className="jp-mod-styled"
        name="network"
        value={value}
        disabled={disabled}
        aria-invalid={errors.network ? true : undefined}
        onChange={event => {
          const network = event.target.value;
          props.onChange(latest => ({ ...latest, network }));
        }}
      >
        {!known && (
          <option value={value}>
            {value ? `${value} (not offered)` : 'Choose a network'}
          </option>
        )}
        {offerings.networks.map(n => (
          <option key={n.id} value={n.name}>
            {n.name +
              (n.external ? ' (external)' : '') +
              (n.name === offerings.network ? ' — default' : '')}
          </option>
        ))}
      </select>
    </Field>
  );
}
