import * as React from 'react';

import { Field } from './field';
import {
  chosenArch,
  gpuAvailability,
  IHardwareValues,
  withImage
} from './hardware';
import { HardwarePicker, IHardwarePickerProps } from './hardwarePicker';
import { imageChoices, imagesFromOfferings } from './images';
import { ImagePicker } from './imagePicker';
import { IImage } from './types';

/** The image catalogue as a dialog holds it (see `ImageCatalogState`). */
export interface IImageCatalogView {
  /** The images read (tested versions only unless `advanced`), or null before an answer. */
  readonly images: ReadonlyArray<IImage> | null;
  /** Whether untested versions are shown too. */
  readonly advanced: boolean;
  readonly loading: boolean;
  /** Why the catalogue could not be read, or null. */
  readonly error: string | null;
  setAdvanced(advanced: boolean): void;
  /** Whether the user may mark versions tested (an admin). */
  readonly canMark?: boolean;
  /** Why the last mark failed, or null. */
  readonly markError?: string | null;
  /** Mark a version tested (`POST images/tested`), then read the catalogue again. */
  markTested?(image: string, tag: string): Promise<void>;
}

export interface IServerConfigFieldsProps<
  V extends IHardwareValues
> extends IHardwarePickerProps<V> {
  /** The image catalogue; without it, the cloud's `offerings.images` (if any). */
  catalog?: IImageCatalogView;
}

/** The images to pick from: the catalogue, or the cloud's own list when it cannot be read. */
function availableImages(
  props: Pick<IServerConfigFieldsProps<IHardwareValues>, 'catalog' | 'cloud'>
): ReadonlyArray<IImage> | null {
  const { catalog } = props;
  if (catalog?.images) {
    return catalog.images;
  }
  if (catalog && !catalog.error) {
    return []; // not read yet: the picker says so
  }
  // The catalogue could not be read: the cloud's own list, if it has one.
  const offered = props.cloud.offerings.images;
  return offered && offered.length > 0 ? imagesFromOfferings(offered) : null;
}

/**
 * What a server runs on: its image (a card per image the cloud can run with the hardware
 * chosen) and its hardware. Shared by the create and edit dialogs.
 */
export function ServerConfigFields<V extends IHardwareValues>(
  props: IServerConfigFieldsProps<V>
): JSX.Element {
  const { cloud, values, errors, disabled, catalog, locks = {} } = props;
  const fields = new Set(cloud.config_fields);
  const images = availableImages(props);
  const image = images?.find(i => i.id === values.image);
  const set = (key: 'image' | 'image_tag', value: string) =>
    props.onChange(latest => ({ ...latest, [key]: value }));

  let imageInputs: React.ReactNode = null;
  if (fields.has('image') && images) {
    const choices = imageChoices(images, {
      offered: cloud.offerings.images,
      arch: chosenArch(cloud, values),
      gpu: gpuAvailability(cloud, values)
    });
    const error = errors.image ?? errors.image_tag;
    imageInputs = (
      <div
        className={
          'jp-ComputeServers-field' +
          (error ? ' jp-ComputeServers-fieldInvalid' : '')
        }
        data-field="image"
      >
        <ImagePicker
          choices={choices}
          image={values.image}
          tag={values.image_tag}
          advanced={catalog?.advanced ?? false}
          onAdvanced={on => catalog?.setAdvanced(on)}
          loading={catalog?.loading}
          loadError={catalog?.error}
          onMarkTested={
            catalog?.canMark && catalog.markTested
              ? (image, tag) => void catalog.markTested?.(image, tag)
              : undefined
          }
          markError={catalog?.markError}
          disabled={disabled}
          locked={locks.image ?? locks.image_tag}
          onSelect={(chosen, tag) =>
            props.onChange(latest => withImage(cloud, latest, chosen, tag))
          }
        />
        {error && (
          <div className="jp-ComputeServers-fieldError" role="alert">
            {error}
          </div>
        )}
      </div>
    );
  } else if (fields.has('image')) {
    // No catalogue to pick from: the image and tag as typed, for the server to check.
    imageInputs = (['image', 'image_tag'] as const)
      .filter(key => fields.has(key))
      .map(key => (
        <Field
          key={key}
          name={key}
          label={key === 'image' ? 'Image' : 'Image tag'}
          error={errors[key]}
          hint={locks[key]}
        >
          <input
            className="jp-mod-styled"
            name={key}
            value={values[key]}
            disabled={disabled || !!locks[key]}
            aria-invalid={errors[key] ? true : undefined}
            onChange={event => set(key, event.target.value)}
          />
        </Field>
      ));
  }

  return (
    <>
      {imageInputs}
      <HardwarePicker {...props} image={image} />
    </>
  );
}
