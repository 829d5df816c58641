# A job queue.
require "json"

module Jobs
  # A job with a name and arguments.
  class Job
    attr_reader :name, :args

    def initialize(name, args = {})
      @name = name
      @args = args
    end

    # The job as JSON.
    def to_json(*opts)
      { name: @name, args: @args }.to_json(*opts)
    end
  end

  # A first-in, first-out queue of jobs.
  class Queue
    def initialize
      @jobs = []
    end

    # Adds a job.
    def push(job)
      raise ArgumentError, "not a job" unless job.is_a?(Job)
      @jobs << job
      self
    end

    # Takes the oldest job.
    def pop
      @jobs.shift
    end

    def self.from_json(text)
      queue = new
      JSON.parse(text).each { |j| queue.push(Job.new(j["name"], j["args"])) }
      queue
    end
  end
end
