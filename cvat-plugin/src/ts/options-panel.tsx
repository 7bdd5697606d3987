// The method's options, folded away: one input per option the service declares.

import React from '@modules/react';
import InputNumber from '@modules/antd/lib/input-number';
import Input from '@modules/antd/lib/input';
import Select from '@modules/antd/lib/select';
import Switch from '@modules/antd/lib/switch';
import Tooltip from '@modules/antd/lib/tooltip';

import type { OptionValues } from './api';
import type { OptionField } from './options';

interface Props {
    fields: OptionField[];
    values: OptionValues;
    onChange: (values: OptionValues) => void;
}

function FieldInput({ field, value, set }: { field: OptionField; value: unknown; set: (value: unknown) => void }): JSX.Element {
    switch (field.kind) {
        case 'boolean':
            return <Switch size='small' checked={Boolean(value)} onChange={set} />;
        case 'choice':
            return (
                <Select
                    size='small'
                    style={{ minWidth: 120 }}
                    value={value as string}
                    options={field.choices.map((choice) => ({ value: choice as string, label: String(choice) }))}
                    onChange={set}
                />
            );
        case 'integer':
        case 'number':
            return (
                <InputNumber
                    size='small'
                    value={value as number}
                    min={field.minimum}
                    max={field.maximum}
                    step={field.kind === 'integer' ? 1 : 0.05}
                    onChange={(number) => set(number ?? field.defaultValue)}
                />
            );
        default:
            return <Input size='small' value={String(value ?? '')} onChange={(event) => set(event.target.value)} />;
    }
}

export default function OptionsPanel({ fields, values, onChange }: Props): JSX.Element {
    return (
        <details className='momentseg-options'>
            <summary>Method options</summary>
            <table>
                <tbody>
                    {fields.map((field) => (
                        <tr key={field.name}>
                            <td style={{ paddingRight: 8 }}>
                                <Tooltip title={field.help}>{field.label}</Tooltip>
                            </td>
                            <td>
                                <FieldInput
                                    field={field}
                                    value={field.name in values ? values[field.name] : field.defaultValue}
                                    set={(value) => onChange({ ...values, [field.name]: value })}
                                />
                            </td>
                        </tr>
                    ))}
                </tbody>
            </table>
        </details>
    );
}
