@echo off
rem Double-click to set up (first time only) and open the trainer in your browser.
rem   launch.bat [app options]        e.g. launch.bat --port 7861
rem   launch.bat test [pytest options]
rem Set TORCH_INDEX_URL to pick a PyTorch wheel index yourself.
setlocal EnableExtensions EnableDelayedExpansion
cd /d "%~dp0"

set "TORCH_SPEC=torch==2.13.0"
if not defined TORCH_CUDA_INDEX_URL set "TORCH_CUDA_INDEX_URL=https://download.pytorch.org/whl/cu130"
set "VENV=.venv"
set "VPY=%VENV%\Scripts\python.exe"

set "MODE=app"
set "ARGS="
set "FIRST=1"
:collect
if "%~1"=="" goto collected
if "!FIRST!"=="1" if /i "%~1"=="test" (
    set "MODE=test"
    set "FIRST=0"
    shift
    goto collect
)
set "FIRST=0"
set ARGS=!ARGS! %1
shift
goto collect
:collected

rem ---- Python 3.10-3.12 and the virtual environment
if exist "%VPY%" (
    "%VPY%" -c "import sys" >nul 2>&1 || rmdir /s /q "%VENV%"
)
if not exist "%VPY%" (
    set "PY="
    for %%V in (3.12 3.11 3.10) do (
        if not defined PY (
            py -%%V -c "import sys" >nul 2>&1 && set "PY=py -%%V"
        )
    )
    if not defined PY (
        python -c "import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 12)))" >nul 2>&1 && set "PY=python"
    )
    if not defined PY (
        echo [launch] error: Python 3.10, 3.11 or 3.12 is needed. Install it from https://www.python.org/downloads/
        echo [launch] and tick "Add python.exe to PATH", then double-click launch.bat again.
        goto fail
    )
    echo [launch] creating %VENV% with !PY!
    !PY! -m venv "%VENV%" || (echo [launch] error: could not create %VENV% & goto fail)
)

rem ---- PyTorch with CUDA when an NVIDIA GPU is present
set "TORCH_INDEX=%TORCH_INDEX_URL%"
if not defined TORCH_INDEX (
    where nvidia-smi >nul 2>&1 && nvidia-smi -L >nul 2>&1 && set "TORCH_INDEX=%TORCH_CUDA_INDEX_URL%"
)

call :install app requirements.txt || goto fail
if /i "%MODE%"=="test" (
    call :install test requirements-test.txt || goto fail
    "%VPY%" -m pytest !ARGS!
    set "RC=!ERRORLEVEL!"
    if not "!RC!"=="0" goto fail
    exit /b 0
)

echo [launch] starting the GUI; close this window to stop it
"%VPY%" app.py --inbrowser !ARGS!
if errorlevel 1 goto fail
exit /b 0

rem ---- install when requirements changed (fingerprint stored in the venv)
:install
set "KIND=%~1"
set "STAMP=%VENV%\.installed-%KIND%"
set "WANT="
for /f "usebackq delims=" %%H in (`call "%VPY%" -m trainer.fingerprint "%TORCH_SPEC% %TORCH_INDEX%" requirements.txt %~2`) do set "WANT=%%H"
set "HAVE="
if exist "%STAMP%" set /p HAVE=<"%STAMP%"
if "!HAVE!"=="!WANT!" exit /b 0
if /i "%KIND%"=="app" (
    echo [launch] installing PyTorch %TORCH_SPEC% %TORCH_INDEX% - the first start takes a while
    if defined TORCH_INDEX (
        "%VPY%" -m pip install --disable-pip-version-check -q %TORCH_SPEC% --index-url %TORCH_INDEX% --extra-index-url https://pypi.org/simple || exit /b 1
    ) else (
        "%VPY%" -m pip install --disable-pip-version-check -q %TORCH_SPEC% || exit /b 1
    )
)
echo [launch] installing %~2
"%VPY%" -m pip install --disable-pip-version-check -q -r %~2 || exit /b 1
>"%STAMP%" echo !WANT!
exit /b 0

:fail
echo.
echo [launch] Something went wrong; the message above says what. Press a key to close this window.
pause >nul
exit /b 1
