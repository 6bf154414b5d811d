import * as React from 'react';

import {
  gpuBadge,
  IImageChoice,
  imageGpu,
  safeIcon,
  versionLabel
} from './images';
import { IImage } from './types';

/** An image's icon, or its initial when it has none (or one the page must not load). */
function ImageIcon(props: { image: IImage }): JSX.Element {
  const src = safeIcon(props.image.icon);
  if (src) {
    return (
      <img
        className="jp-ComputeServers-imageIcon"
        src={src}
        alt=""
        aria-hidden="true"
      />
    );
  }
  return (
    <span
      className="jp-ComputeServers-imageIcon jp-mod-initial"
      aria-hidden="true"
    >
      {(props.image.label || props.image.id).charAt(0).toUpperCase()}
    </span>
  );
}

export interface IImagePickerProps {
  /** The images offered (see `imageChoices`). */
  choices: ReadonlyArray<IImageChoice>;
  /** The image and version chosen. */
  image: string;
  tag: string;
  /** Whether untested versions are shown too. */
  advanced: boolean;
  onAdvanced: (advanced: boolean) => void;
  onSelect: (image: IImage, tag: string) => void;
  /** The catalogue is being read. */
  loading?: boolean;
  /** Why the catalogue could not be read. */
  loadError?: string | null;
  disabled?: boolean;
  /** Why the image cannot change now (an edit of a server that is not deprovisioned). */
  locked?: string;
  /** Given to admins: mark the chosen untested version tested, for every user. */
  onMarkTested?: (image: string, tag: string) => void;
  /** Why the last mark failed. */
  markError?: string | null;
}

/**
 * The image picker: a card per image offered, with its icon, label, description, GPU badge
 * ("needs a GPU", "can use a GPU") and a version select; an "Advanced" switch shows untested
 * versions too.
 */
export function ImagePicker(props: IImagePickerProps): JSX.Element {
  const { choices, image, tag, disabled, locked } = props;
  const inactive = disabled || !!locked;
  const chosen = choices.find(c => c.image.id === image);
  const shown = locked ? choices.filter(c => c === chosen) : choices;
  const select = (choice: IImageChoice, version: string) => {
    if (!inactive) {
      props.onSelect(choice.image, version);
    }
  };
  const move = (from: number, step: number) => {
    const next = shown[(from + step + shown.length) % shown.length];
    if (next) {
      select(next, next.versions[0].tag);
    }
  };
  return (
    <div className="jp-ComputeServers-imagePicker">
      <div className="jp-ComputeServers-imagePickerHeader">
        <span className="jp-ComputeServers-fieldLabel">Image</span>
        <label
          className="jp-ComputeServers-switch"
          title="Show versions that were not tested with `jupyter compute-servers images test`"
        >
          <input
            type="checkbox"
            role="switch"
            name="advanced"
            checked={props.advanced}
            aria-checked={props.advanced}
            disabled={inactive}
            onChange={event => props.onAdvanced(event.target.checked)}
          />{' '}
          Advanced: untested versions too
        </label>
      </div>
      {props.loadError && (
        <div className="jp-ComputeServers-fieldHint" role="note">
          Could not read the image catalogue: {props.loadError}
        </div>
      )}
      {props.loading && choices.length === 0 && (
        <div className="jp-ComputeServers-fieldHint">Reading the images…</div>
      )}
      {!props.loading && choices.length === 0 && !locked && (
        <div className="jp-ComputeServers-fieldHint" role="note">
          No image of the catalogue can run with this cloud and hardware.
        </div>
      )}
      {image && !chosen && !props.loading && (
        <div className="jp-ComputeServers-fieldHint" role="note">
          {image}
          {tag ? `:${tag}` : ''} is not offered here
          {locked ? '' : ': choose another image'}.
        </div>
      )}
      <div
        className="jp-ComputeServers-imageCards"
        role="radiogroup"
        aria-label="Image"
      >
        {shown.map((choice, index) => {
          const selected = choice === chosen;
          const versionTag =
            selected && choice.versions.some(v => v.tag === tag)
              ? tag
              : choice.versions[0].tag;
          const badge = gpuBadge(choice.image);
          return (
            <div
              key={choice.image.id}
              className={
                'jp-ComputeServers-imageCard' +
                (selected ? ' jp-mod-selected' : '')
              }
              role="radio"
              aria-checked={selected}
              aria-disabled={inactive || undefined}
              tabIndex={selected || (!chosen && index === 0) ? 0 : -1}
              data-image-id={choice.image.id}
              onClick={() => {
                if (!selected) {
                  select(choice, versionTag);
                }
              }}
              onKeyDown={event => {
                if (event.target !== event.currentTarget) {
                  return;
                }
                if (event.key === ' ') {
                  event.preventDefault();
                  select(choice, versionTag);
                } else if (
                  event.key === 'ArrowDown' ||
                  event.key === 'ArrowRight'
                ) {
                  event.preventDefault();
                  move(index, 1);
                } else if (
                  event.key === 'ArrowUp' ||
                  event.key === 'ArrowLeft'
                ) {
                  event.preventDefault();
                  move(index, -1);
                }
              }}
            >
              <ImageIcon image={choice.image} />
              <div className="jp-ComputeServers-imageText">
                <div className="jp-ComputeServers-imageTitle">
                  <span className="jp-ComputeServers-imageLabel">
                    {choice.image.label || choice.image.id}
                  </span>
                  {badge && (
                    <span
                      className="jp-ComputeServers-gpuBadge"
                      data-gpu={imageGpu(choice.image)}
                    >
                      {badge}
                    </span>
                  )}
                </div>
                {choice.image.description && (
                  <div className="jp-ComputeServers-imageDescription">
                    {choice.image.description}
                  </div>
                )}
                {choice.note && !selected && (
                  <div className="jp-ComputeServers-imageNote">
                    {choice.note}
                  </div>
                )}
              </div>
              <select
                className="jp-mod-styled jp-ComputeServers-imageVersion"
                name={selected ? 'image_tag' : undefined}
                aria-label={`${choice.image.label || choice.image.id} version`}
                value={versionTag}
                disabled={inactive}
                onClick={event => event.stopPropagation()}
                onChange={event => select(choice, event.target.value)}
              >
                {choice.versions.map(v => (
                  <option key={v.tag} value={v.tag}>
                    {versionLabel(v)}
                  </option>
                ))}
              </select>
            </div>
          );
        })}
      </div>
      {props.onMarkTested &&
        !inactive &&
        chosen &&
        chosen.versions.some(v => v.tag === tag && !v.tested) && (
          <div className="jp-ComputeServers-fieldHint">
            {chosen.image.label || chosen.image.id} {tag} is untested.{' '}
            <button
              type="button"
              className="jp-mod-styled jp-ComputeServers-markTested"
              onClick={() => props.onMarkTested?.(chosen.image.id, tag)}
            >
              Mark tested
            </button>{' '}
            (shown to every user)
          </div>
        )}
      {props.markError && (
        <div className="jp-ComputeServers-fieldError" role="alert">
          Could not mark it tested: {props.markError}
        </div>
      )}
      {locked && <div className="jp-ComputeServers-fieldHint">{locked}</div>}
    </div>
  );
}
