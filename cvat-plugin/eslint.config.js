import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
    js.configs.recommended,
    ...tseslint.configs.recommended,
    {
        files: ['src/**/*.{ts,tsx}', 'tests/**/*.ts'],
        languageOptions: {
            parserOptions: { ecmaFeatures: { jsx: true } },
        },
        rules: {
            'no-console': 'error',
            '@typescript-eslint/no-non-null-assertion': 'off',
        },
    },
);
