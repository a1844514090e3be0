"""The job's infrastructure: what every layer stands on.

``config`` (every setting, by section; credentials from the environment), ``settings_doc``
(the settings rendered for ``--help`` and the README), ``session`` (the SparkSession), ``jvm``
(the one door to py4j handles), ``faults`` (the one judgement of a fault), ``exit_codes``,
``logs`` (structured log events).

May import: pyspark and ``runtime`` itself, nothing else of the package.
"""
